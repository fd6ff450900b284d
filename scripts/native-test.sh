#!/usr/bin/env bash
# Builds the native core and its tests under ASan/UBSan (build-native-test/) and runs them with
# ctest. Exits non-zero when anything fails; the last line is "native: N passed, M failed",
# counting test cases across all test binaries.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-native-test"
jobs="${BM_NATIVE_JOBS:-2}"

for tool in cmake ctest g++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "native-test: $tool is not installed" >&2
    echo "native: 0 passed, 1 failed"
    exit 1
  fi
done

if ! cmake -S "$root" -B "$build" -DBM_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >"$build.configure.log" 2>&1; then
  cat "$build.configure.log" >&2
  echo "native: 0 passed, 1 failed (configure)"
  exit 1
fi
rm -f "$build.configure.log"

if ! cmake --build "$build" --parallel "$jobs"; then
  echo "native: 0 passed, 1 failed (build)"
  exit 1
fi

ctest --test-dir "$build" --output-on-failure ${BM_CTEST_ARGS:-}
status=$?

# Every binary prints "<name>: N passed, M failed"; ctest keeps all output in LastTest.log.
log="$build/Testing/Temporary/LastTest.log"
passed=0
failed=0
if [[ -f "$log" ]]; then
  while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
  done < <(sed -nE 's/^[A-Za-z0-9_]+_test: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$log")
fi
# A binary that crashed (sanitizer report, abort) prints no summary: count it as a failure.
if [[ $status -ne 0 && $failed -eq 0 ]]; then
  failed=1
fi
echo "native: $passed passed, $failed failed"
[[ $status -eq 0 && $failed -eq 0 ]]
