#!/usr/bin/env bash
# Mutation testing of the core decision code against the unit tests (not in CI): cargo-mutants
# changes one thing at a time in the files below (a comparison, a boolean, a function's return
# value, a match arm) and runs the library's unit tests on each change; a change no test notices
# is a "missed" mutant. See docs/testing.md#mutation-testing.
#
# `--cargo-arg=--lib` (not `-- --lib`): cargo-mutants passes arguments after `--` to the test
# phase only, and its build phase (`cargo test --no-run`) would then compile every integration
# test for every mutant. The adaptive-concurrency simulations (`silentauth::concurrency::tests`,
# 28 of the unit tests' 30 s, on code none of these files holds) are skipped.
#
#   scripts/mutants.sh [FILE...] [-- cargo-mutants options]
#
# Without FILEs: the seven files below. Needs cargo-mutants (`cargo install cargo-mutants
# --locked`). Runs one job at a time under `nice -n 10`; cargo-mutants builds a copy of the tree
# in a temporary directory, so the working tree stays usable. Set CARGO_TARGET_DIR to a target
# directory that already holds the compiled dependencies (librdkafka is built from source) to
# spare the copy a cold build; only the root crate is then rebuilt (and build nothing else in
# that target directory during the run: cargo names the root crate's artifacts without its path,
# so a build from the working tree would take a mutant's build for its own). Results land in
# mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt, unviable.txt); at the end
# the script prints a line per file from outcomes.json.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

files=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
    files+=("$1")
    shift
done
[[ "${1:-}" == "--" ]] && shift
if [[ ${#files[@]} -eq 0 ]]; then
    files=(
        src/kafka/offsets.rs
        src/silentauth/spent.rs
        src/silentauth/classify.rs
        src/silentauth/retry.rs
        'src/idempotency/*.rs'
        src/contract/dead_letter.rs
        src/replay/record.rs
    )
fi

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants: cargo-mutants not found; install it with: cargo install cargo-mutants --locked" >&2
    exit 1
fi

args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done

# Where cargo-mutants writes (its `--output DIR` holds mutants.out/), for the summary below.
out=mutants.out
for ((i = 1; i <= $#; i++)); do
    case "${!i}" in
        --output=*) out="${!i#--output=}/mutants.out" ;;
        --output | -o) j=$((i + 1)) && out="${!j}/mutants.out" ;;
    esac
done

# Without debug info (unless asked for): the mutants' unit-test binary links in a few seconds
# instead of most of a minute. A target directory's artifacts built with debug info are not
# reused, so point CARGO_TARGET_DIR at one built the same way (or let the baseline build it).
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"

started=$SECONDS
status=0
nice -n 10 cargo mutants "${args[@]}" --jobs 1 --no-shuffle --timeout 300 --cargo-arg=--lib "$@" \
    -- -- --skip silentauth::concurrency::tests || status=$?
echo "mutants: cargo mutants exited $status after $((SECONDS - started)) s" >&2

# Per file: mutants, caught, missed, unviable, timeout, and the seconds spent building and
# testing its mutants (the baseline aside), from mutants.out/outcomes.json.
python3 - "$out/outcomes.json" <<'PY'
import collections, json, sys
outcomes = json.load(open(sys.argv[1]))["outcomes"]
names = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}
rows = collections.defaultdict(collections.Counter)
for o in outcomes:
    if o["scenario"] == "Baseline":
        continue
    row = rows[o["scenario"]["Mutant"]["file"]]
    row["mutants"] += 1
    row[names.get(o["summary"], o["summary"])] += 1
    row["seconds"] += sum(p["duration"] for p in o["phase_results"])
print(f"{'file':32} mutants caught missed unviable timeout  seconds  caught/(caught+missed)")
for file, r in sorted(rows.items()):
    judged = r["caught"] + r["missed"]
    share = f"{100 * r['caught'] / judged:.1f}%" if judged else "-"
    print(f"{file:32} {r['mutants']:7} {r['caught']:6} {r['missed']:6} {r['unviable']:8} "
          f"{r['timeout']:7} {r['seconds']:8.0f}  {share}")
PY
exit "$status"
