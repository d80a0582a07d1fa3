#!/usr/bin/env bash
# Peer-rig adapter for the mesh (see ../shared/rig/README.md, "Adding a proxy under test"):
# starts an outbound and an inbound mesh-proxy with the rig's ports and certificates.
#   client --h1/h2c--> outbound (per-upstream listeners) --HTTP/2 over mutual TLS 1.3-->
#          inbound (client certificate required) --HTTP/1.1--> backend
# Run: cargo build --profile dist -p mesh-proxy && ../shared/rig/run.sh --adapters benches/rig
# (the dist profile is release with fat LTO and one codegen unit; MESH_PROXY_BIN overrides the binary)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${MESH_PROXY_BIN:-${CARGO_TARGET_DIR:-$here/target}/dist/mesh-proxy}
case "${1:-start}" in
  check) [ -x "$bin" ] ;;
  version) "$bin" --version ;;
  start)
    : "${RIG_OUT_PORT:?}" "${RIG_OUT_H2_PORT:?}" "${RIG_IN_PORT:?}" "${RIG_BACKEND_PORT:?}" "${RIG_CERT_DIR:?}" "${RIG_WORK_DIR:?}"
    c=$RIG_CERT_DIR
    w=$RIG_WORK_DIR
    cores=${RIG_CORES:-1}
    cat > "$w/destinations.json" <<JSON
{"destinations": [{"authority": "backend.rig:80",
  "endpoints": [{"addr": "127.0.0.1:$RIG_IN_PORT", "identity": "inbound.rig.local"}]}]}
JSON
    RUST_LOG=${RUST_LOG:-warn} "$bin" \
      --trust-anchors "$c/ca.pem" --cert "$c/client.pem" --key "$c/client.key" \
      --upstream "backend.rig:80=127.0.0.1:$RIG_OUT_PORT" \
      --upstream "backend.rig:80=127.0.0.1:$RIG_OUT_H2_PORT" \
      --destinations "$w/destinations.json" \
      --admin-listen 127.0.0.1:0 --cores "$cores" >"$w/mesh-out.log" 2>&1 &
    echo "outbound $!"
    RUST_LOG=${RUST_LOG:-warn} "$bin" \
      --trust-anchors "$c/ca.pem" --cert "$c/server.pem" --key "$c/server.key" \
      --inbound-listen "127.0.0.1:$RIG_IN_PORT" --inbound-forward "127.0.0.1:$RIG_BACKEND_PORT" \
      --inbound-policy all-authenticated --app-protocol http1 \
      --admin-listen 127.0.0.1:0 --cores "$cores" >"$w/mesh-in.log" 2>&1 &
    echo "inbound $!"
    ;;
  *) echo "usage: $0 check|version|start" >&2; exit 2 ;;
esac
