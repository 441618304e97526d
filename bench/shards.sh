#!/usr/bin/env bash
# Sharded probing on one machine (issue: probing from many machines):
#   1. browser-mode page loads/s with 1, 2 and 4 shards (each `--concurrency 1`, all started by one
#      --start-at, DURATION seconds, reports merged), against nginx serving the sample app. On 2
#      cores no gain is expected: the point is that a merged run counts exactly what its shards
#      did and sharding adds no overhead.
#   2. the time `deskew report merge` takes for 100 shard reports.
# Prints Markdown tables. Needs nginx and Chromium (scripts/test installs them).
#
#   bench/shards.sh [DURATION_S]     default 20 s per run (DESKEW=path uses that binary)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
if [ -z "${DESKEW:-}" ]; then
  cargo build --release --locked -q -p deskew-cli
fi
deskew=${DESKEW:-$PWD/target/release/deskew}
work=$(mktemp -d "${TMPDIR:-/tmp}/deskew-bench-shards.XXXXXX")
nginx_pid=""
cleanup() { [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
daemon off; pid $work/nginx.pid; error_log $work/error.log; worker_processes 1;
events {}
http { access_log off; include /etc/nginx/mime.types;
  server { listen 127.0.0.1:$port; root $PWD/tests/fixtures/dist/v1; location / { try_files \$uri /index.html; } } }
CONF
/usr/sbin/nginx -c "$work/nginx.conf" & nginx_pid=$!
sleep 0.5
url="http://127.0.0.1:$port/"

echo "| shards (browser mode, concurrency 1 each, ${DURATION} s) | page loads | loads/s | failed | merged = sum of shards |"
echo "|---|---|---|---|---|"
for n in 1 2 4; do
  at=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)
  pids=()
  for i in $(seq 0 $((n - 1))); do
    "$deskew" probe "$url" --mode browser --idle 200 --concurrency 1 --shard "$i/$n" --start-at "$at" \
      --duration "${DURATION}s" --report "$work/b$n-$i.json" -q & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  "$deskew" report merge "$work"/b"$n"-*.json --json -q > "$work/merged-$n.json" || true
  python3 - "$work" "$n" "$DURATION" <<'PY'
import json, sys, glob
work, n, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
m = json.load(open(f"{work}/merged-{n}.json"))
parts = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/b{n}-*.json"))]
exact = sum(p["loads"]["total"] for p in parts) == m["loads"]["total"]
print(f"| {n} | {m['loads']['total']} | {m['loads']['total'] / dur:.2f} | {m['loads']['failed']} | {'yes' if exact else 'NO'} |")
PY
done

# 100 shard reports: one real HTTP report, re-tagged as shards 0..99 of one run.
"$deskew" probe "$url" --duration 5s --concurrency 4 --shard 0/100 --run-id bench --report "$work/h.json" -q || true
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r = json.load(open(f"{work}/h.json"))
for i in range(100):
    r["run"]["shard"] = i
    json.dump(r, open(f"{work}/m-{i:03}.json", "w"))
PY
t0=$(date +%s.%N)
"$deskew" report merge "$work"/m-*.json --json -q > "$work/m.json" || true
t1=$(date +%s.%N)
loads=$(python3 -c "import json,sys; print(json.load(open('$work/m.json'))['loads']['total'])")
echo
echo "| merge | reports | bytes each | merged loads | time |"
echo "|---|---|---|---|---|"
echo "| deskew report merge | 100 | $(stat -c %s "$work/h.json") | $loads | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f s", b - a }') |"
