#!/usr/bin/env bash
# Run a command and record how long it took, for the summary that `make lab`,
# `make test` and .ci/run print at the end.
#
#   lab/timed.sh "label" command args...   run it, record "label  N s  ok|FAILED"
#   lab/timed.sh --summary                  print the recorded table
#   lab/timed.sh --reset                    forget earlier records (unless HAMQ_TIMINGS_APPEND
#                                           is set: .ci/run keeps its own parts in the table)
set -uo pipefail
record="${HAMQ_TIMINGS:-.lab/timings.txt}"
mkdir -p "$(dirname "$record")"

case "${1:-}" in
    --reset) [[ -n "${HAMQ_TIMINGS_APPEND:-}" ]] || : >"$record"; exit 0 ;;
    --summary)
        echo
        echo "== time per part =="
        [[ -s "$record" ]] && column -t -s $'\t' "$record" 2>/dev/null || cat "$record"
        exit 0 ;;
esac

label="$1"; shift
echo "== $label: $* ($(date -u +%H:%M:%S) UTC)"
start=$(date +%s)
"$@"
rc=$?
seconds=$(( $(date +%s) - start ))
status=ok; [[ $rc == 0 ]] || status="FAILED (exit $rc)"
printf '%s\t%d s\t%s\n' "$label" "$seconds" "$status" >>"$record"
echo "== $label: $status after $seconds s"
exit $rc
