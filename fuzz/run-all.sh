#!/bin/sh
# Runs every fuzz target for $1 seconds (default 900), one after the other, seeded from
# testdata/ and ../shared/corpus (read only; new inputs go to fuzz/corpus/<target>).
# Findings land in fuzz/artifacts/<target>/; logs in fuzz/logs/.
set -u
secs=${1:-900}
cd "$(dirname "$0")"
shared=${RDB_CORPUS_DIR:-../../shared/corpus}
for t in ${TARGETS:-rdb_file rdb_dump resp aof_manifest}; do
  mkdir -p corpus/$t logs
  case $t in
    rdb_file) seeds="../testdata $shared" ;;
    rdb_dump) seeds="seeds/rdb_dump ../testdata $shared" ;;
    resp) seeds="../testdata/aof $shared/redis-replicator $shared/redis" ;;
    aof_manifest) seeds="../testdata/aof" ;;
  esac
  start=$(date +%s)
  cargo +nightly fuzz run -O $t corpus/$t $seeds -- \
    -max_total_time=$secs -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
    > logs/$t.log 2>&1
  echo "$t: exit $? after $(( $(date +%s) - start )) s" >> logs/summary.txt
done
