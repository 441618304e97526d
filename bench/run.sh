#!/usr/bin/env bash
# deskew's benchmarks, each against a peer measured in the same run on the same machine:
#   1. manifest of a large build        deskew manifest        vs  find | xargs sha256sum
#   2. first upload to S3 (SeaweedFS)   deskew publish         vs  aws s3 sync
#   3. re-upload, nothing changed       deskew publish         vs  aws s3 sync
#   4. re-upload, one chunk changed     deskew publish         vs  aws s3 sync
# Each timing is the median of RUNS runs (default 3); ratios are peer / deskew (above 1: deskew
# is faster). Prints a Markdown table. Needs what scripts/test installs (weed, aws).
#
#   bench/run.sh [FILES] [KIB_PER_FILE]     default 2000 files of 24 KiB (about 47 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-2000}
KIB=${2:-24}
RUNS=${RUNS:-3}

cargo build --release --locked -q -p deskew-cli
deskew=$PWD/target/release/deskew
work=$(mktemp -d "${TMPDIR:-/tmp}/deskew-bench.XXXXXX")
cleanup() { tests/s3/seaweedfs.sh stop "$work/seaweedfs" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# A synthetic SPA build: hashed chunks of pseudo-random content, an index.html, a few mutables.
python3 - "$work/dist" "$FILES" "$KIB" <<'PY'
import hashlib, os, random, sys
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/assets", exist_ok=True)
rnd = random.Random(42)
for i in range(n):
    body = rnd.randbytes(kib * 1024)
    h = hashlib.sha256(body).hexdigest()[:8]
    open(f"{root}/assets/chunk{i}-{h}.js", "wb").write(body)
open(f"{root}/index.html", "w").write("<!doctype html><script type=module src=/assets/chunk0.js></script>")
open(f"{root}/robots.txt", "w").write("User-agent: *\n")
PY

tests/s3/seaweedfs.sh start "$work/seaweedfs" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$work/seaweedfs/env"
export AWS_ACCESS_KEY_ID=$DESKEW_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$DESKEW_TEST_S3_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
ep=$DESKEW_TEST_S3_ENDPOINT; bucket=$DESKEW_TEST_S3_BUCKET

# median_of CMD...: runs CMD $RUNS times, prints the median wall time in seconds.
median_of() {
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'
}

row() { # NAME DESKEW_S PEER_S
  printf '| %s | %s s | %s s | %s |\n' "$1" "$2" "$3" "$(awk -v d="$2" -v p="$3" 'BEGIN { printf "%.2f", p / d }')"
}

echo "| benchmark ($FILES files, $((FILES * KIB / 1024)) MiB) | deskew | peer | peer / deskew |"
echo "|---|---|---|---|"

d=$(median_of "$deskew" manifest "$work/dist" --json)
p=$(median_of sh -c "find '$work/dist' -type f -print0 | xargs -0 sha256sum")
row "manifest vs find+sha256sum" "$d" "$p"

n=0
first_deskew() { n=$((n + 1)); "$deskew" -q publish "$work/dist" --store "s3://$bucket/d$n" --endpoint-url "$ep" --release r1; }
first_peer() { n=$((n + 1)); aws s3 sync "$work/dist" "s3://$bucket/p$n" --endpoint-url "$ep" --only-show-errors; }
d=$(median_of first_deskew)
p=$(median_of first_peer)
row "first upload vs aws s3 sync" "$d" "$p"

"$deskew" -q publish "$work/dist" --store "s3://$bucket/same" --endpoint-url "$ep" --release r0
aws s3 sync "$work/dist" "s3://$bucket/samepeer" --endpoint-url "$ep" --only-show-errors
m=0
again_deskew() { m=$((m + 1)); "$deskew" -q publish "$work/dist" --store "s3://$bucket/same" --endpoint-url "$ep" --release "again$m"; }
again_peer() { aws s3 sync "$work/dist" "s3://$bucket/samepeer" --endpoint-url "$ep" --only-show-errors; }
d=$(median_of again_deskew)
p=$(median_of again_peer)
row "re-upload, nothing changed" "$d" "$p"

k=0
one_change() {
  k=$((k + 1))
  rm -f "$work/dist/assets/changed-"*.js
  echo "// change $k $RANDOM" > "$work/dist/assets/changed-$(printf '%08x' "$k$RANDOM" | cut -c1-8).js"
}
change_deskew() { one_change; "$deskew" -q publish "$work/dist" --store "s3://$bucket/same" --endpoint-url "$ep" --release "chg$k"; }
change_peer() { one_change; aws s3 sync "$work/dist" "s3://$bucket/samepeer" --endpoint-url "$ep" --only-show-errors; }
d=$(median_of change_deskew)
p=$(median_of change_peer)
row "re-upload, one chunk changed" "$d" "$p"
