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
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"

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
        -*) die "unknown option $1 (see --help)" ;;
        *) out=$1; shift ;;
    esac
done

out=${out:-$root/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
make_work_dir bench-all
cd "$root"

step() {
    note "$1 ($(date -u +%T))"
}

# Runs $2... with stdout to $out/$1.txt and stderr to $out/$1.log; when it
# fails, shows the end of the log and stops.
measure() {
    local name=$1
    shift
    "$@" >"$out/$name.txt" 2>"$out/$name.log" \
        || { tail -n 20 "$out/$name.log" >&2; die "$name failed (see $out/$name.log)"; }
}

step "building the release binaries"
build_rumor
build=0 broker_bin= bench_bin=
resolve_rumor_bins

quick_flag=()
failover_seconds=40 sweep_clients=1,10,50,100,500,1000,5000,10000 sweep_seconds=5
if [[ $quick == 1 ]]; then
    quick_flag=(--quick)
    failover_seconds=10 sweep_clients=1,10 sweep_seconds=1
fi

step "Redis side by side"
measure redis scripts/bench-vs-redis.sh --no-build "${quick_flag[@]}"

step "three-broker cluster against one broker"
measure cluster scripts/bench-cluster.sh --no-build "${quick_flag[@]}"

for mode in gossip leader; do
    step "failover, $mode mode"
    measure "failover-$mode" "$bench_bin" failover --mode "$mode" --seconds "$failover_seconds" \
        --broker-bin "$broker_bin" --plot "$out/failover-$mode.svg"
done

step "sweep to $sweep_clients clients"
start_brokers sweep 1 fsync
measure sweep "$bench_bin" sweep --host 127.0.0.1 --port "${started_ports[0]}" \
    --clients "$sweep_clients" --seconds-per-step "$sweep_seconds" --plot "$out/sweep.svg"
stop_pid "${started_pids[0]}" "the sweep's broker"

step "NATS JetStream side by side"
measure nats scripts/bench-vs-nats.sh --no-build "${quick_flag[@]}"

step "done: $out"
