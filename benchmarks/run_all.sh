#!/usr/bin/env bash
# Run every benchmark script under benchmarks/ (ours and the other stages'), one after the other.
#
#   benchmarks/run_all.sh [--quick | --long] [--only NAME[,NAME...]] [--out DIR]
#
#   --quick   a smoke run of everything (about 15 minutes): fewer rounds, shorter windows
#   (default) the documented runs (about 45 minutes)
#   --long    the issue-sized reliability runs as well: 30-minute soak at 99 Hz, 5-minute intake
#             outage, 10,000-process churn, 100 lifecycle cycles (about 1 h 30 more)
#   --only    run only these scripts (file names without .py, e.g. overhead,accuracy)
#   --out     where logs go (default: a new directory under /tmp); each script's output is in
#             DIR/NAME.log, and DIR/summary.txt lists exit status and duration per script
#
# Needs root (BPF, perf) and the virtual environment (scripts/setup.sh). Scripts this file does
# not know are run with no arguments (or with --quick in quick mode when their --help offers it).
# The exit status is 1 when a script failed (crashed or reported a missed goal).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MODE=default
ONLY=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --long) MODE=long ;;
        --only) ONLY="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$(mktemp -d /tmp/hp-benchmarks-XXXXXX)}
mkdir -p "$OUT"

# name -> arguments, per mode. Micro-benchmarks (no BPF) first, then the host-wide ones.
args_for() {
    local name=$1
    case "$MODE:$name" in
        quick:profile_encode) echo "--runs 3" ;;
        quick:symbols_bench) echo "--binaries 200" ;;
        quick:processors_bench) echo "--repeat 5" ;;
        quick:exporters_bench) echo "--repeat 3" ;;
        quick:receiver_startup) echo "--runs 2" ;;
        quick:overhead|quick:accuracy|quick:scale|quick:startup) echo "--quick" ;;
        quick:soak) echo "--minutes 1 --interval 5" ;;
        quick:exec_churn) echo "--rounds 1 --window 15" ;;
        *:soak) echo "--minutes 3" ;;
        long:overhead) echo "--rounds 3 --window 60 --warmup 25" ;;
        long:accuracy) echo "--seconds 60 --repeat 3" ;;
        *) echo "" ;;
    esac
}

ORDER="profile_encode symbols_bench processors_bench exporters_bench uploader_bench unwind_bench receiver_startup
startup accuracy overhead exec_churn scale soak"
# any other script present is appended
for f in benchmarks/*.py; do
    n=$(basename "$f" .py)
    case " $(echo $ORDER) " in *" $n "*) ;; *) ORDER="$ORDER $n" ;; esac
done

failed=0
: > "$OUT/summary.txt"
run() {  # name, args...
    local name=$1; shift
    local t0=$(date +%s)
    echo "=== $name $*" | tee -a "$OUT/summary.txt"
    "$PY" "benchmarks/$name.py" "$@" > "$OUT/$name${SUFFIX:-}.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    tail -n 25 "$OUT/$name${SUFFIX:-}.log" | grep -v '^{' | tail -n 15
    echo "--- $name${SUFFIX:-}: exit $rc, ${dt}s, log $OUT/$name${SUFFIX:-}.log" | tee -a "$OUT/summary.txt"
    [ $rc -eq 0 ] || failed=1
}

for name in $ORDER; do
    [ -f "benchmarks/$name.py" ] || continue
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
    a=$(args_for "$name")
    if [ -z "$a" ] && [ "$MODE" = quick ] && "$PY" "benchmarks/$name.py" --help 2>/dev/null | grep -q -- '--quick'; then
        a="--quick"
    fi
    # shellcheck disable=SC2086
    SUFFIX="" run "$name" $a
done

# reliability scripts (the CI versions are tests/test_reliability_*.py)
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",soak,"* ]]; then
    case "$MODE" in
        quick)
            SUFFIX=-fault run soak --fault --fault-seconds 30 --minutes 1 --interval 5
            SUFFIX=-churn run soak --churn --processes 2000 --seconds 20
            SUFFIX=-lifecycle run soak --lifecycle --cycles 10 ;;
        default)
            SUFFIX=-fault run soak --fault --fault-seconds 120 --minutes 1
            SUFFIX=-churn run soak --churn --processes 5000 --seconds 60
            SUFFIX=-lifecycle run soak --lifecycle --cycles 30 ;;
        long)
            SUFFIX=-30min run soak --minutes 30 --interval 10
            for kind in down slow 429 500; do
                SUFFIX=-fault-$kind run soak --fault --fault-kind $kind --fault-seconds 300 --minutes 1
            done
            SUFFIX=-churn run soak --churn --processes 10000 --seconds 120
            SUFFIX=-lifecycle run soak --lifecycle --cycles 100 ;;
    esac
fi

echo
echo "logs: $OUT"
cat "$OUT/summary.txt" | grep '^---'
exit $failed
