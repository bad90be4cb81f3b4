#!/usr/bin/env bash
# Two apps, each beside its own tether sidecar, on the embedded defaults
# (SQLite registry, local CA, mTLS between the sidecars). checkout calls
# orders by app ID a few times, then everything stops.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ORDERS_HTTP=${ORDERS_HTTP:-3500}
CHECKOUT_HTTP=${CHECKOUT_HTTP:-3501}

tether run --app-id orders --app-port 8081 --dapr-http-port "$ORDERS_HTTP" -- python3 "$here/orders.py" &
orders_pid=$!
trap 'kill -TERM $orders_pid 2>/dev/null; wait $orders_pid 2>/dev/null || true' EXIT

# Wait until orders answers through its sidecar (its 404 for an unknown order).
for _ in $(seq 1 200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ORDERS_HTTP/v1.0/invoke/orders/method/orders/0" || true)
  [ "$code" = 404 ] && break
  sleep 0.1
done

tether run --app-id checkout --app-port 8082 --dapr-http-port "$CHECKOUT_HTTP" -- python3 "$here/checkout.py"
