#!/usr/bin/env bash
# Fuzz the sans-I/O protocol cores: fuzz/fuzz_http.py (HTTP11Connection.receive_data) and
# fuzz/fuzz_ws.py (WebSocketConnection.receive_data), SECONDS each (default 60).
#
#   scripts/fuzz.sh 30      # a CI-sized run
#   scripts/fuzz.sh 600     # the long run reported in docs/security.md
#
# FUZZ_SEED=N with FUZZ_RUNS=M (stop after M inputs, not after a time) makes a run repeatable:
# CI uses both, so it cannot turn red by chance; long runs explore with a fresh seed.
# Needs atheris (pip install atheris). Seeds come from the test corpora (python -m fuzz.seeds);
# the corpus grown, the logs and any crashing input stay in $FUZZ_WORKDIR (a temporary
# directory by default), whose path is printed. Exits non-zero if a target fails.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! python -c "import atheris" 2>/dev/null; then
    echo "fuzz.sh needs atheris: pip install atheris" >&2
    exit 2
fi
work="${FUZZ_WORKDIR:-$(mktemp -d -t asgisock-fuzz.XXXXXX)}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python -m fuzz.seeds "$work/seeds"
mkdir -p "$work/artifacts"

status=0
for target in http ws; do
    mkdir -p "$work/corpus-$target"
    log="$work/$target.log"
    started=$SECONDS
    if python "fuzz/fuzz_$target.py" -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=1024 \
            ${FUZZ_SEED:+-seed="$FUZZ_SEED"} ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} \
            -dict="fuzz/$target.dict" -artifact_prefix="$work/artifacts/$target-" -print_final_stats=1 \
            "$work/corpus-$target" "$work/seeds/$target" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    runs=$(grep -o "stat::number_of_executed_units: [0-9]*" "$log" | grep -o "[0-9]*$" || echo "?")
    rss=$(grep -o "stat::peak_rss_mb: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo "?")
    echo "$target: $result, $runs inputs in $((SECONDS - started))s, peak RSS ${rss} MB," \
        "corpus $(find "$work/corpus-$target" -type f | wc -l) files"
    if [ "$result" != ok ]; then
        grep -v "^INFO: Instrumenting" "$log" | tail -n 30 >&2
    fi
done
echo "logs, corpora and artifacts: $work"
exit "$status"
