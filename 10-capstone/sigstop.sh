#!/usr/bin/env bash
# Coordinated omission, measured: freeze a server for one second with
# SIGSTOP in the middle of a 5 s run, once under closed-loop load and once
# under open-loop load at a fixed rate, and compare what each one reports.
#
#   10-capstone/sigstop.sh [SERVER_BINARY]     (default: redis-server)
#
# The server listens on $PORT (6390). Set RATE for the open loop's requests
# per second (default 50000). Plots go to target/bench/sigstop-*.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${1:-redis-server}
PORT=${PORT:-6390}
RATE=${RATE:-50000}
mkdir -p target/bench
cargo build --release --quiet --bin step10-capstone

pin_server=() pin_client=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    pin_server=(taskset -c 0) pin_client=(taskset -c 1)
fi

scratch=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then
        kill -CONT "$pid" 2>/dev/null || true # a stopped process cannot die
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if listening; then
    echo "port $PORT is taken; pick another with PORT=..." >&2
    exit 1
fi
flags=(--port "$PORT")
[[ $(basename "$server") == redis-server ]] && flags+=(--save '' --appendonly no)
(cd "$scratch" && exec "${pin_server[@]}" "$server" "${flags[@]}") >"$scratch/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do listening && break; sleep 0.1; done
listening || { cat "$scratch/server.log" >&2; exit 1; }

# run NAME OPTIONS...: 5 s of SET load; the server is frozen from 2 s to 3 s.
run() {
    local name=$1
    shift
    echo "=== $name: the server is stopped from t=2s to t=3s"
    "${pin_client[@]}" target/release/step10-capstone -p "$PORT" -c 50 -t set -r 100000 \
        --duration 5 --plot "target/bench/sigstop-$name.svg" "$@" &
    local generator=$!
    sleep 2
    kill -STOP "$pid"
    sleep 1
    kill -CONT "$pid"
    wait "$generator"
    echo "plot: target/bench/sigstop-$name.svg"
}

run closed-loop
run open-loop --rate "$RATE"
