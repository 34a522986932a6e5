#!/usr/bin/env bash
# Holds the step 10 generator against redis-benchmark: the same redis-server,
# the same workloads, the two tools taking turns (A B A B ...), each pinned to
# its own core, and the medians of each tool's rounds side by side.
#
#   10-capstone/agreement.sh [ROUNDS]      (default 5)
#
# redis-server listens on $PORT (6391). Two workloads, both -c 50 -P 1:
#
#   SET, GET   -n 200000 -r 100000. The server's cheapest commands: which
#              tool can drive more of them?
#   EVAL       a Lua loop of $LOOP (1000) steps per request, -n 100000. The
#              server is now the bottleneck for both tools, so both put the
#              same load on it, and their percentiles must agree.
#
# Set CLIENTS or PIPELINE to try other shapes.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
PORT=${PORT:-6391}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
LOOP=${LOOP:-1000}
for tool in redis-server redis-benchmark taskset; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install redis-server util-linux)" >&2; exit 1; }
done
cargo build --release --quiet --bin step10-capstone

scratch=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if listening; then
    echo "port $PORT is taken; pick another with PORT=..." >&2
    exit 1
fi
(cd "$scratch" && exec taskset -c 0 redis-server --port "$PORT" --save '' --appendonly no) >/dev/null &
pid=$!
for _ in $(seq 100); do listening && break; sleep 0.1; done

shape=(-p "$PORT" -c "$CLIENTS" -P "$PIPELINE" --csv)
cheap=(-n 200000 -r 100000 -t set,get)
# No comma in the script: the CSV is split on commas below.
busy=(-n 100000 eval "local i = 0 while i < $LOOP do i = i + 1 end return i" 0)

# Both tools print CSV rows starting "test","rps",avg,min,p50,p95,p99,max
# (ms); each row gets the tool's name in front, the EVAL rows the name EVAL.
measure() {
    local name=$1
    shift
    taskset -c 1 "$@" | sed 1d | sed 's/^"eval [^"]*"/"EVAL"/' | sed "s/^/\"$name\",/" >>"$scratch/rows"
}
for round in $(seq "$rounds"); do
    echo "round $round/$rounds" >&2
    measure redis-benchmark redis-benchmark "${shape[@]}" "${cheap[@]}"
    measure step10-capstone target/release/step10-capstone "${shape[@]}" "${cheap[@]}"
    measure redis-benchmark redis-benchmark "${shape[@]}" "${busy[@]}"
    measure step10-capstone target/release/step10-capstone "${shape[@]}" "${busy[@]}"
done

# Medians per tool and test, then the generator's figures as a ratio of
# redis-benchmark's: ops/s first (is it at least as fast?), then p50 and p99
# (do they agree within 10%?).
tr -d '"' <"$scratch/rows" | sort -t, -k2,2 -k1,1 | awk -F, '
    function median(list,   n, v, i, j, t) {
        n = split(list, v, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function within(ratio) { return ratio >= 0.9 && ratio <= 1.1 ? "yes" : "no" }
    { key = $2 SUBSEP $1; rps[key] = rps[key] " " $3; p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $8
      if (!($2 in seen)) { seen[$2] = 1; tests[++count] = $2 } }
    END {
        split("redis-benchmark step10-capstone", tools, " ")
        printf "%-5s %-16s %10s %8s %8s\n", "test", "tool", "ops/s", "p50 ms", "p99 ms"
        for (n = 1; n <= count; n++) {
            t = tests[n]
            for (i = 1; i <= 2; i++) {
                k = t SUBSEP tools[i]
                r[i] = median(rps[k]); a[i] = median(p50[k]); b[i] = median(p99[k])
                printf "%-5s %-16s %10.0f %8.3f %8.3f\n", t, tools[i], r[i], a[i], b[i]
            }
            printf "%-5s %-16s %9.2fx %7.2fx %7.2fx   p50 within 10%%: %s, p99: %s\n", t, "ratio", \
                r[2] / r[1], a[2] / a[1], b[2] / b[1], within(a[2] / a[1]), within(b[2] / b[1])
        }
    }'
