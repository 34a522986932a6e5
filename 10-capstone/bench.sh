#!/usr/bin/env bash
# Benchmarks the workshop's servers against a real redis-server with the
# step 10 load generator, in interleaved rounds (A B A B ...), and reports
# medians, ratios to redis-server, and a latency-by-percentile plot.
#
#   10-capstone/bench.sh [--all] [generator options...]
#
# Without --all (`make 10-capstone`): the newest server step against
# redis-server, SET and GET. With --all (`make bench`): every server step
# 02-09 that exists, PING for all of them and SET and GET from step 03 on
# (step 02 has no keyspace). Extra options go to the generator, e.g. -n 20000.
#
# Ports: redis-server on $REDIS_PORT (6379), steps from $STEP_PORT (6380) up.
# Results and plots go to target/bench/. Everything this script starts, it
# stops, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

all=false
if [[ ${1:-} == --all ]]; then
    all=true
    shift
fi
extra=("$@")
REDIS_PORT=${REDIS_PORT:-6379}
STEP_PORT=${STEP_PORT:-6380}
CARGO=${CARGO:-cargo}
out=target/bench
mkdir -p "$out"

# On a 2-core machine the servers and the generator would otherwise fight
# over the same cores, and the scheduler would move them around mid-run:
# pin the servers to core 0 and the generator to core 1.
pin_server=() pin_client=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    pin_server=(taskset -c 0) pin_client=(taskset -c 1)
else
    echo "note: taskset or a second core is missing, so nothing is pinned" >&2
fi

# The server steps that exist (are members of the workspace), in order;
# their binaries are "step" + folder name.
steps=()
for dir in 0[2-9]-*/; do
    grep -q "\"${dir%/}\"" Cargo.toml && steps+=("${dir%/}")
done
if ((${#steps[@]} == 0)); then
    echo "no server step (02-09) found" >&2
    exit 1
fi
$all || steps=("${steps[-1]}")

bins=(--bin step10-capstone)
for step in "${steps[@]}"; do bins+=(--bin "step$step"); done
echo "building ${steps[*]} and the generator (release)"
"$CARGO" build --release --quiet "${bins[@]}"

# Servers run in a scratch directory, so no snapshot or AOF file lands in
# the repository; the trap stops them and removes it however we exit.
scratch=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME PORT COMMAND...: runs a server and waits until it accepts.
start() {
    local name=$1 port=$2
    shift 2
    if listening "$port"; then
        echo "port $port is taken: stop what runs there, or pick free ports with" >&2
        echo "REDIS_PORT=... STEP_PORT=... (redis-server, then the steps from there up)" >&2
        exit 1
    fi
    (cd "$scratch" && exec "${pin_server[@]}" "$@") >"$scratch/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        listening "$port" && return 0
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "$name did not start:" >&2
            cat "$scratch/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name did not listen on $port within 10 s" >&2
    exit 1
}

targets=() set_targets=()
if listening "$REDIS_PORT"; then
    echo "using the server already listening on $REDIS_PORT as redis-server (not pinned; its settings are its own)"
    targets+=("redis-server=127.0.0.1:$REDIS_PORT")
elif command -v redis-server >/dev/null; then
    start redis-server "$REDIS_PORT" redis-server --port "$REDIS_PORT" --save '' --appendonly no
    targets+=("redis-server=127.0.0.1:$REDIS_PORT")
else
    echo "redis-server is not installed, so there is nothing to hold the steps against;" >&2
    echo "install it with: apt-get install redis-server (the steps are measured anyway)" >&2
fi
set_targets=("${targets[@]}")

port=$STEP_PORT
for step in "${steps[@]}"; do
    # Persistence off, as for redis-server, in the steps that have it: each
    # step lists the options it knows when given one it does not.
    known=$(timeout 5 "target/release/step$step" --no-such-option 2>&1 || true)
    flags=()
    [[ $known == *--save* ]] && flags+=(--save '')
    [[ $known == *--appendonly* ]] && flags+=(--appendonly no)
    start "step$step" "$port" "$PWD/target/release/step$step" --port "$port" "${flags[@]}"
    targets+=("step$step=127.0.0.1:$port")
    # SET and GET arrived in step 03.
    ((10#${step%%-*} >= 3)) && set_targets+=("step$step=127.0.0.1:$port")
    port=$((port + 1))
done

# bench TEST TARGETS... : at pipeline depths 1 and 16, each with its plot.
bench() {
    local test=$1
    shift
    local list
    list=$(IFS=,; echo "$*")
    for pipeline in 1 16; do
        local requests=100000
        ((pipeline > 1)) && requests=1000000
        local plot="$out/latency-$test-P$pipeline.svg"
        echo
        "${pin_client[@]}" target/release/step10-capstone --compare "$list" \
            -t "$test" -c 50 -P "$pipeline" -n "$requests" -r 100000 --warmup 0.2 \
            --plot "$plot" "${extra[@]}" | tee -a "$out/results.txt"
        echo "plot: $plot"
    done
}

: >"$out/results.txt"
{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
    echo "# servers pinned: ${pin_server[*]:-no}; generator pinned: ${pin_client[*]:-no}"
} | tee -a "$out/results.txt"
if $all; then
    bench ping "${targets[@]}"
fi
if ((${#set_targets[@]} > 0)); then
    bench set "${set_targets[@]}"
    bench get "${set_targets[@]}"
fi
echo
echo "results: $out/results.txt"
