#!/usr/bin/env bash
# The whole test suite, with its own set-up, as the README and .ci/run call it:
#   1. the Debian tools the interop tests drive (qemu-img, nbdinfo, fio, nbdfuse, fuse2fs, nbdkit);
#   2. the npm dependencies, the native addon (node-gyp) and the TypeScript build;
#   3. the C++ core tests under AddressSanitizer and UBSan;
#   4. every mocha layer (unit, native contract, property, scenario, integration, interop).
# It ends with one line "N passed, N failed" (native + mocha) and exits non-zero on any failure.
# In CI (CI=true) a missing tool is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-results

step() { printf '\n== %s\n' "$*"; }

step "system tools"
bash scripts/install-tools.sh || { echo "0 passed, 1 failed"; exit 1; }

step "npm dependencies and build"
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi \
    || { echo "0 passed, 1 failed"; exit 1; }
fi
npm run --silent build || { echo "0 passed, 1 failed"; exit 1; }

step "native core tests (ASan + UBSan)"
native_passed=0; native_failed=0
native_out=$(bash scripts/native-test.sh 2>&1); native_rc=$?
printf '%s\n' "$native_out" | tail -n 40
line=$(printf '%s\n' "$native_out" | grep -E '^native: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
if [[ -n $line ]]; then
  native_passed=$(sed -E 's/^native: ([0-9]+) passed.*/\1/' <<<"$line")
  native_failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
fi
if (( native_rc != 0 && native_failed == 0 )); then native_failed=1; fi

step "mocha"
rm -f .test-results/mocha.json
npx mocha --reporter ./scripts/mocha-summary-reporter.js "$@"; mocha_rc=$?
mocha_passed=0; mocha_failed=0; mocha_skipped=0
if [[ -f .test-results/mocha.json ]]; then
  read -r mocha_passed mocha_failed mocha_skipped < <(node -e '
    const r = require("./.test-results/mocha.json");
    console.log(r.passed, r.failed, r.skipped)')
fi
if (( mocha_rc != 0 && mocha_failed == 0 )); then mocha_failed=1; fi
if [[ ${CI:-} == true ]] && (( mocha_skipped > 0 )); then
  echo "CI: $mocha_skipped test(s) were skipped; in CI nothing may be skipped"
  mocha_failed=$((mocha_failed + mocha_skipped))
fi

passed=$((native_passed + mocha_passed))
failed=$((native_failed + mocha_failed))
echo
echo "$passed passed, $failed failed"
(( failed == 0 ))
