#!/usr/bin/env bash
# Builds build/Release/blockmirror.node with cmake-js, offline: cmake-js would download the Node
# headers unless a Node directory is configured (npm_config_nodedir). The running node's install
# prefix carries them (include/node/node.h) for distribution packages and official tarballs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -z "${npm_config_nodedir:-}" ]]; then
  prefix="$(node -p "require('path').resolve(process.execPath, '..', '..')")"
  if [[ -f "$prefix/include/node/node.h" ]]; then
    export npm_config_nodedir="$prefix"
  else
    echo "build-cmake: no Node headers under $prefix/include/node; cmake-js will download them" >&2
  fi
fi
exec npx --no-install cmake-js compile --CDCMAKE_EXPORT_COMPILE_COMMANDS=ON --parallel 2 "$@"
