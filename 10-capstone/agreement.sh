#!/usr/bin/env bash
# Holds the step 10 generator against redis-benchmark: the same redis-server,
# the same workload, the two tools taking turns (A B A B ...), each pinned to
# its own core, and the medians of each tool's rounds side by side.
#
#   10-capstone/agreement.sh [ROUNDS]      (default 5)
#
# redis-server listens on $PORT (6391). Workload: -c 50 -P 1 -n 200000
# -r 100000, SET then GET; set CLIENTS or PIPELINE to try others.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
PORT=${PORT:-6391}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
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

workload=(-p "$PORT" -c "$CLIENTS" -P "$PIPELINE" -n 200000 -r 100000 -t set,get --csv)
# Both print CSV rows starting "test","rps",avg,min,p50,p95,p99,max (ms).
for round in $(seq "$rounds"); do
    echo "round $round/$rounds" >&2
    taskset -c 1 redis-benchmark "${workload[@]}" | sed 1d | sed 's/^/"redis-benchmark",/' >>"$scratch/rows"
    taskset -c 1 target/release/step10-capstone "${workload[@]}" | sed 1d | sed 's/^/"step10-capstone",/' >>"$scratch/rows"
done

# Medians per tool and test, then the generator's figures as a ratio of
# redis-benchmark's.
tr -d '"' <"$scratch/rows" | sort -t, -k2,2 -k1,1 | awk -F, '
    function median(list,   n, v, i, j, t) {
        n = split(list, v, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    { key = $2 SUBSEP $1; rps[key] = rps[key] " " $3; p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $8
      tests[$2] = 1; tools[$1] = 1 }
    END {
        printf "%-5s %-16s %10s %8s %8s\n", "test", "tool", "ops/s", "p50 ms", "p99 ms"
        for (t in tests) {
            for (tool in tools) {
                k = t SUBSEP tool
                r[tool] = median(rps[k]); a[tool] = median(p50[k]); b[tool] = median(p99[k])
                printf "%-5s %-16s %10.0f %8.3f %8.3f\n", t, tool, r[tool], a[tool], b[tool]
            }
            printf "%-5s %-16s %9.2fx %7.2fx %7.2fx\n", t, "ratio", \
                r["step10-capstone"] / r["redis-benchmark"], \
                a["step10-capstone"] / a["redis-benchmark"], b["step10-capstone"] / b["redis-benchmark"]
        }
    }'
