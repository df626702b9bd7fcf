#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/*_fuzz.cpp, built by scripts/sanitize.sh into build-san) for SECONDS each,
# from a copy of its committed seed corpus (fuzz/corpus/<target>/, plus ../shared's client requests for the
# request parsers when present). Fails on any crash, hang (>10 s per input), leak, or sanitizer report, and
# prints executions per target. The mutation seed is fixed (FUZZ_SEED, default 1), so a run repeats the start of any
# longer run with the same seed on the same sources: CI's 30 s cover a prefix of what was fuzzed before landing.
#   scripts/fuzz.sh [SECONDS=30] [TREE=build-san]        e.g. FUZZ_SEED=$RANDOM scripts/fuzz.sh 3600 for a long run
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
tree="${2:-build-san}"
shared="${OPTIQ_SHARED_DIR:-../shared}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
printf '| target | executions | exec/s | corpus | result |\n|---|---|---|---|---|\n'
for bin in "$tree"/*_fuzz; do
  name=$(basename "$bin" _fuzz)
  exe="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
  corpus="$out/$name"
  mkdir -p "$corpus"
  cp fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  if [ "$name" = openai_request ] || [ "$name" = anthropic_request ]; then
    find "$shared/clients" -name '*.json' -size -256k -exec cp {} "$corpus"/ \; 2>/dev/null || true
  fi
  log="$out/$name.log"
  result=ok
  if ! (cd "$out" && "$exe" -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=3072 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$out/$name-" "$corpus" >"$log" 2>&1); then
    result=FAILED
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$execs" "$rate" "$(ls "$corpus" | wc -l)" "$result"
  if [ "$result" != ok ]; then
    echo "---- $name: last lines of its log" >&2
    tail -40 "$log" >&2
    for a in "$out/$name-"*; do
      [ -f "$a" ] || continue
      mkdir -p fuzz/crashes && cp "$a" fuzz/crashes/ && echo "crashing input kept in fuzz/crashes/$(basename "$a")" >&2
    done
  fi
done
exit $status
