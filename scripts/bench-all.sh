#!/usr/bin/env bash
# One measuring run of every benchmark behind BENCHMARKS.md, one after
# another on this machine (nothing else should run meanwhile):
#
#   redis.txt            scripts/bench-vs-redis.sh: single publishes, batches
#                        of 1000 and publish -> delivery latency against Redis
#   cluster.txt          scripts/bench-cluster.sh: a three-broker cluster
#                        against one broker alone
#   failover-gossip.txt  bench failover --mode gossip (and .svg: the plot)
#   failover-leader.txt  bench failover --mode leader (and .svg)
#   sweep.txt            bench sweep from 1 to 10,000 clients on one broker
#                        (and .svg)
#   nats.txt             scripts/bench-vs-nats.sh: against NATS JetStream
#
# into the directory given (default bench-results/<date>), each with its
# stderr beside it (*.log). Builds the release binaries once first.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench-all.sh [--quick] [OUT_DIR]

  --quick   tiny runs, to check that every step works
  OUT_DIR   where the reports go [default: bench-results/<UTC date and time>]
EOF
}

quick=0
out=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "bench-all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) out=$1; shift ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${out:-$root/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
bin=$root/target/release

step() {
    echo "bench-all.sh: $1 ($(date -u +%T))" >&2
}

step "building the release binaries"
(cd "$root" && cargo build --release --bin broker --bin bench) >&2

quick_flag=()
failover_seconds=40 sweep_clients=1,10,50,100,500,1000,5000,10000 sweep_seconds=5
if [[ $quick == 1 ]]; then
    quick_flag=(--quick)
    failover_seconds=10 sweep_clients=1,10 sweep_seconds=1
fi

step "Redis side by side"
"$root/scripts/bench-vs-redis.sh" --no-build "${quick_flag[@]}" >"$out/redis.txt" 2>"$out/redis.log"

step "three-broker cluster against one broker"
"$root/scripts/bench-cluster.sh" --no-build "${quick_flag[@]}" >"$out/cluster.txt" 2>"$out/cluster.log"

for mode in gossip leader; do
    step "failover, $mode mode"
    "$bin/bench" failover --mode "$mode" --seconds "$failover_seconds" \
        --plot "$out/failover-$mode.svg" >"$out/failover-$mode.txt" 2>"$out/failover-$mode.log"
done

step "sweep to $sweep_clients clients"
sweep_dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/broker" --host 127.0.0.1 --port "$port" --data-dir "$sweep_dir" --peers /dev/null \
    2>"$out/sweep-broker.log" &
broker_pid=$!
trap 'kill "$broker_pid" 2>/dev/null || true; rm -rf "$sweep_dir"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done
"$bin/bench" sweep --host 127.0.0.1 --port "$port" --clients "$sweep_clients" \
    --seconds-per-step "$sweep_seconds" --plot "$out/sweep.svg" >"$out/sweep.txt" 2>"$out/sweep.log"
kill "$broker_pid"
wait "$broker_pid" || true

step "NATS JetStream side by side"
"$root/scripts/bench-vs-nats.sh" --no-build "${quick_flag[@]}" >"$out/nats.txt" 2>"$out/nats.log"

step "done: $out"
