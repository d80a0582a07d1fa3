#!/usr/bin/env bash
# Instructions per request through a mesh-proxy pair, counted by callgrind (user space only, so
# the figure does not depend on how busy the machine is). The same pair as the rig's adapter:
#
#   h2load --h1 ──▶ outbound (per-upstream listener) ══ HTTP/2 over mutual TLS ══▶ inbound ──▶ nginx
#
# One proxy at a time runs under `valgrind --tool=callgrind`: a warm-up of WARMUP requests, the
# counters zeroed, REQUESTS requests at RATE requests/s over 10 connections, the counters dumped.
# The figure is the dump's instruction total divided by REQUESTS.
#
#   cargo build --release -p mesh-proxy && benches/callgrind.sh
#   MESH_PROXY_BIN=target/dist/mesh-proxy REQUESTS=5000 RATE=1000 benches/callgrind.sh
#
# Needs valgrind, nginx, h2load (nghttp2-client) and openssl (Debian packages). Prints one line
# per proxy and protocol: `outbound h1 <instructions per request>`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MESH_PROXY_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/mesh-proxy}
warmup=${WARMUP:-1000}
requests=${REQUESTS:-5000}
rate=${RATE:-1000}
protocols=${PROTOCOLS:-h1}
for tool in valgrind callgrind_control nginx h2load openssl; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing (apt-get install valgrind nginx-light nghttp2-client openssl)" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "callgrind.sh: no proxy binary at $bin; build it first (cargo build --release -p mesh-proxy)" >&2; exit 2; }

work=$(mktemp -d /tmp/mesh-callgrind.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "callgrind.sh: nothing listens on port $1" >&2
  return 1
}

# A throwaway CA and two identities (P-256), as the rig's.
(
  cd "$work"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=callgrind-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out ca.pem
  for id in inbound outbound; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$id.key"
    openssl req -new -key "$id.key" -subj "/CN=$id.bench.local" -out "$id.csr"
    printf 'subjectAltName=DNS:%s.bench.local\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$id" > "$id.ext"
    openssl x509 -req -in "$id.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -sha256 \
      -extfile "$id.ext" -out "$id.pem"
  done
) 2>/dev/null

backend=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$backend; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$backend"

run_pair() { # which proxy runs under callgrind: outbound|inbound; protocol: h1|h2
  local under=$1 proto=$2
  local inbound_port out_port out_file="$work/callgrind.$under.$proto.out"
  inbound_port=$(free_port)
  out_port=$(free_port)
  cat > "$work/destinations.json" <<JSON
{"destinations": [{"authority": "backend.bench:80",
  "endpoints": [{"addr": "127.0.0.1:$inbound_port", "identity": "inbound.bench.local"}]}]}
JSON
  local vg=(valgrind --tool=callgrind --callgrind-out-file="$out_file" --dump-instr=no)
  local in_cmd=("$bin" --trust-anchors "$work/ca.pem" --cert "$work/inbound.pem" --key "$work/inbound.key"
    --inbound-listen "127.0.0.1:$inbound_port" --inbound-forward "127.0.0.1:$backend"
    --inbound-policy all-authenticated --app-protocol http1 --admin-listen 127.0.0.1:0)
  local out_cmd=("$bin" --trust-anchors "$work/ca.pem" --cert "$work/outbound.pem" --key "$work/outbound.key"
    --upstream "backend.bench:80=127.0.0.1:$out_port" --destinations "$work/destinations.json"
    --admin-listen 127.0.0.1:0)
  local measured
  if [ "$under" = inbound ]; then
    RUST_LOG=warn "${vg[@]}" "${in_cmd[@]}" >"$work/in.log" 2>&1 &
    measured=$!
    pids+=($measured)
    RUST_LOG=warn "${out_cmd[@]}" >"$work/out.log" 2>&1 &
    pids+=($!)
  else
    RUST_LOG=warn "${in_cmd[@]}" >"$work/in.log" 2>&1 &
    pids+=($!)
    RUST_LOG=warn "${vg[@]}" "${out_cmd[@]}" >"$work/out.log" 2>&1 &
    measured=$!
    pids+=($measured)
  fi
  wait_port "$inbound_port"
  wait_port "$out_port"
  local h2load_proto=()
  [ "$proto" = h1 ] && h2load_proto=(--h1)
  local per_conn=$(( rate / 10 ))
  h2load "${h2load_proto[@]}" -c10 --rps="$per_conn" -n "$warmup" "http://127.0.0.1:$out_port/" >/dev/null
  callgrind_control -z "$measured" >/dev/null 2>&1
  local summary
  summary=$(h2load "${h2load_proto[@]}" -c10 --rps="$per_conn" -n "$requests" "http://127.0.0.1:$out_port/")
  callgrind_control -d "$measured" >/dev/null 2>&1
  local ok
  ok=$(printf '%s\n' "$summary" | sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p')
  if [ "${ok:-0}" != "$requests" ]; then
    echo "callgrind.sh: only ${ok:-0} of $requests requests succeeded through the pair" >&2
    printf '%s\n' "$summary" >&2
    return 1
  fi
  # The zeroed-then-dumped part is the file with the highest suffix.
  local dump
  dump=$(ls -1 "$out_file"* | sort -V | tail -n 1)
  local total
  total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$dump" | head -n 1)
  [ -n "$total" ] || total=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$dump" | head -n 1)
  echo "$under $proto $(( total / requests ))"
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]:1}" 2>/dev/null || true
  pids=("${pids[0]}")
  rm -f "$out_file"*
}

for proto in ${protocols//,/ }; do
  run_pair outbound "$proto"
  run_pair inbound "$proto"
done
