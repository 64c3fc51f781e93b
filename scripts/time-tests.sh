#!/usr/bin/env bash
# Times each test binary of `cargo test --all-targets` on its own, slowest first.
#   scripts/time-tests.sh [NAME...]   only the binaries whose target name is one of NAME
# CARGO_TEST_TARGETS (default --all-targets) picks what is built, e.g. "--test faults".
# Runs with the environment it is given (e.g. TEST_BROKER=kafka KAFKA_BOOTSTRAP_SERVERS=...);
# prints one line per binary: seconds, exit status, target name.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
want=" $* "
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo test ${CARGO_TEST_TARGETS:---all-targets} --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"], m["manifest_path"].rsplit("/", 1)[0])
' | while read -r name exe dir; do
    [[ $# -eq 0 || "$want" == *" $name "* ]] || continue
    start=$(date +%s.%N)
    status=0
    (cd "$dir" && "$exe" >/dev/null 2>&1) || status=$?
    printf '%8.1f s  exit %-3s %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$status" "$name" >>"$out"
done
sort -rn "$out"
