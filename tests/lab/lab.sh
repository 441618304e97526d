#!/usr/bin/env bash
# A Kubernetes-style rolling update on one machine, with real nginx: three "pods" (nginx
# processes on their own loopback ports, each with its own image folder) behind a load balancer,
# also nginx, in one of two flavours:
#   conn     per-connection round-robin (the stream module), as kube-proxy balances a Service
#   request  per-request round-robin (an http upstream), as an ingress controller does
# and one of three asset modes:
#   image    each pod serves only its own image: index.html and its own release's assets
#   volume   pods serve index.html from their image and /assets/ from one deskew directory store
#   s3       pods proxy /assets/ to a bucket (anonymous read) that deskew published to
#
#   lab.sh up DIR MODE FLAVOUR DIST [STORE]   start 3 pods of DIST and the balancer; prints its URL
#                                             (STORE: a directory for volume, http://host:port/bucket/prefix for s3)
#   lab.sh rollout DIR DIST                   roll every pod to DIST: maxSurge 1, maxUnavailable 0
#                                             (start a new pod, wait until ready, add it, remove an
#                                             old one, drain, stop it), a step every STEP seconds
#   lab.sh down DIR                           stop every process the lab started, by pid
#
# Only 127.0.0.1 is used. Everything the lab starts is recorded in DIR and stopped by `down`.
set -euo pipefail

STEP=${LAB_STEP:-0.7}
cmd=${1:-}; dir=${2:-}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
STREAM_MODULE=${STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}

die() { echo "lab: $*" >&2; exit 1; }

# Whether PID is a live process. A daemonized nginx is reparented to PID 1, which in a container
# may never reap it: a zombie counts as gone.
alive() {
  local pid=$1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# pod_conf NAME PORT IMAGE
pod_conf() {
  local name=$1 port=$2 image=$3 p="$dir/pods/$1"
  mkdir -p "$p/tmp"
  local assets=""
  case "$(cat "$dir/mode")" in
    image) assets="" ;;
    volume) assets="location /assets/ { root $(cat "$dir/store"); try_files \$uri =404; add_header Cache-Control \"public, max-age=31536000, immutable\"; }" ;;
    s3) assets="location /assets/ { proxy_pass $(cat "$dir/store")/assets/; proxy_http_version 1.1; }" ;;
  esac
  cat > "$p/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon on;
pid $p/nginx.pid;
error_log $p/error.log warn;
events { worker_connections 512; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $p/tmp/body; proxy_temp_path $p/tmp/proxy; fastcgi_temp_path $p/tmp/fastcgi;
  uwsgi_temp_path $p/tmp/uwsgi; scgi_temp_path $p/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    root $image;
    location / { try_files \$uri /index.html; add_header Cache-Control no-cache; }
    $assets
    location /.deskew/ { deny all; }
  }
}
CONF
  echo "$port" > "$p/port"
}

start_pod() { # NAME DIST
  local name=$1 dist=$2 p="$dir/pods/$1"
  mkdir -p "$p"
  rm -rf "$p/image"; cp -r "$dist" "$p/image"
  local port; port=$(free_port)
  pod_conf "$name" "$port" "$p/image"
  "$NGINX" -c "$p/nginx.conf" -p "$p" || die "pod $name did not start: $(tail -5 "$p/error.log" 2>/dev/null)"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && { echo "$name" >> "$dir/pods.all"; return 0; }
    sleep 0.05
  done
  die "pod $name not ready on port $port"
}

stop_pod() { # NAME: graceful quit, then make sure it is gone
  local p="$dir/pods/$1"
  [ -f "$p/nginx.pid" ] || return 0
  local pid; pid=$(cat "$p/nginx.pid" 2>/dev/null || true)
  "$NGINX" -c "$p/nginx.conf" -p "$p" -s quit 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  rm -f "$p/nginx.pid"
}

lb_conf() { # writes the balancer config for the pods in $dir/upstream
  local l="$dir/lb" servers=""
  mkdir -p "$l/tmp"
  while read -r name; do servers="$servers server 127.0.0.1:$(cat "$dir/pods/$name/port");"; done < "$dir/upstream"
  local port; port=$(cat "$l/port")
  {
    [ "$(cat "$dir/flavour")" = conn ] && echo "load_module $STREAM_MODULE;"
    echo "user root; worker_processes 1; daemon on; pid $l/nginx.pid; error_log $l/error.log warn;"
    echo "events { worker_connections 2048; }"
    if [ "$(cat "$dir/flavour")" = conn ]; then
      echo "stream { upstream pods { $servers } server { listen 127.0.0.1:$port; proxy_pass pods; proxy_connect_timeout 2s; } }"
    else
      echo "http { access_log off; client_body_temp_path $l/tmp/body; proxy_temp_path $l/tmp/proxy; fastcgi_temp_path $l/tmp/fastcgi; uwsgi_temp_path $l/tmp/uwsgi; scgi_temp_path $l/tmp/scgi;"
      echo "  upstream pods { $servers }"
      echo "  server { listen 127.0.0.1:$port; location / { proxy_pass http://pods; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$http_host; } } }"
    fi
  } > "$l/nginx.conf.new"
  mv "$l/nginx.conf.new" "$l/nginx.conf"
}

lb_reload() {
  lb_conf
  "$NGINX" -c "$dir/lb/nginx.conf" -p "$dir/lb" -t -q || die "balancer config is invalid"
  "$NGINX" -c "$dir/lb/nginx.conf" -p "$dir/lb" -s reload
}

case "$cmd" in
  up)
    mode=${3:-}; flavour=${4:-}; dist=${5:-}; store=${6:-}
    [ -n "$dir" ] && [ -n "$dist" ] || die "usage: lab.sh up DIR MODE FLAVOUR DIST [STORE]"
    case "$mode" in image|volume|s3) ;; *) die "mode must be image, volume or s3";; esac
    case "$flavour" in conn|request) ;; *) die "flavour must be conn or request";; esac
    [ "$mode" = image ] || [ -n "$store" ] || die "mode $mode needs STORE"
    [ -x "$NGINX" ] || die "nginx is not installed (Debian: apt-get install nginx libnginx-mod-stream)"
    [ "$flavour" = request ] || [ -f "$STREAM_MODULE" ] || die "the nginx stream module is missing (Debian: apt-get install libnginx-mod-stream)"
    mkdir -p "$dir/pods" "$dir/lb"
    dir=$(cd "$dir" && pwd)
    echo "$mode" > "$dir/mode"; echo "$flavour" > "$dir/flavour"; echo "$store" > "$dir/store"
    : > "$dir/upstream"; : > "$dir/pods.all"; echo 0 > "$dir/next"
    for i in 1 2 3; do start_pod "pod$i" "$dist"; echo "pod$i" >> "$dir/upstream"; done
    echo 3 > "$dir/next"
    free_port > "$dir/lb/port"
    lb_conf
    "$NGINX" -c "$dir/lb/nginx.conf" -p "$dir/lb" || die "balancer did not start: $(tail -5 "$dir/lb/error.log")"
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$(cat "$dir/lb/port")/" 2>/dev/null && break; sleep 0.05; done
    echo "http://127.0.0.1:$(cat "$dir/lb/port")/"
    ;;
  rollout)
    dist=${3:-}
    [ -n "$dir" ] && [ -n "$dist" ] || die "usage: lab.sh rollout DIR DIST"
    dir=$(cd "$dir" && pwd)
    mapfile -t old < "$dir/upstream"
    n=$(cat "$dir/next")
    for victim in "${old[@]}"; do
      n=$((n + 1)); new="pod$n"
      echo "lab: starting $new" >&2
      start_pod "$new" "$dist"                 # maxSurge 1: one extra pod, ready before it gets traffic
      echo "$new" >> "$dir/upstream"; lb_reload
      sleep "$STEP"
      grep -vx "$victim" "$dir/upstream" > "$dir/upstream.new" || true; mv "$dir/upstream.new" "$dir/upstream"
      lb_reload                                # maxUnavailable 0: the old pod leaves only now
      sleep "$STEP"                            # drain
      echo "lab: stopping $victim" >&2
      stop_pod "$victim"
    done
    echo "$n" > "$dir/next"
    ;;
  down)
    [ -n "$dir" ] && [ -d "$dir" ] || exit 0
    if [ -f "$dir/lb/nginx.pid" ]; then
      pid=$(cat "$dir/lb/nginx.pid"); kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
      alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    fi
    if [ -f "$dir/pods.all" ]; then while read -r name; do stop_pod "$name"; done < "$dir/pods.all"; fi
    ;;
  *) die "usage: lab.sh up|rollout|down DIR ..." ;;
esac
