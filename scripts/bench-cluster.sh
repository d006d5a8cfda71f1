#!/usr/bin/env bash
# Three rumor brokers (a gossip cluster) against one broker alone, in one
# run, on this machine: every broker of the cluster applies every message,
# on the same cores as the broker alone had to itself. All brokers run
# with --durability fsync, gossip mode, on loopback; 100-byte payloads.
#
# Each round measures, in turn:
#
#   1. one broker: batches of 1000       (bench publish --batch 1000 --connections 4)
#   2. the cluster: the same batches to broker 1, with --replica for brokers
#      2 and 3 (bench publish reports how long after the last
#      acknowledgement each replica held every message)
#   3. one broker: single publishes      (wrk -t2 -c50, a Lua POST body)
#   4. the cluster: the same single publishes to broker 1; then each
#      replica's GET /cluster `have` is read every 10 ms until it holds
#      every message broker 1 held when wrk exited: the replicas' lag
#
# --runs rounds, so that machine noise hits both alike. The brokers are
# started afresh for every round (four processes: the broker alone and
# the three of the cluster, empty data directories, removed after the
# round), and all run through the round; the report gives what the idle
# ones cost. Counts are checked after every run (bench publish's, wrk's
# answers against GET /topics/{name} of broker 1 and of each replica), so
# errors cannot inflate a rate. The report (stdout) gives the versions
# and the machine, per measurement the median and the min-max range, the
# replicas' lag, and the ratios cluster/one broker (of the medians, and
# the range of each round's) against the targets: batches >= 0.45,
# single publishes >= 0.6, the replicas' lag bounded
# (read here as: every replica held every message within 1 s of the last
# acknowledgement, in every run; pacing, --max-replica-lag, keeps a
# replica within 10,000 events).
# Progress goes to stderr, so `scripts/bench-cluster.sh > out.txt` keeps
# only the report.
#
# Installs wrk (the Debian package) when missing. Starts its own brokers
# on free 127.0.0.1 ports in a temporary directory (under $TMPDIR, so the
# fsyncs hit that file system) and stops them by pid, after each round
# and any left at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"

usage() {
    cat <<'EOF'
Usage: scripts/bench-cluster.sh [options]

  --runs R              rounds, each measurement once a round, interleaved (default 3; env RUNS)
  --quick               tiny run to check the script works: 1 round, 20000 batch messages, 1 s wrk runs
  --seconds S           seconds of each wrk run of single publishes (default 3)
  --batch-messages M    messages of each batch run (default 1000000: about 2 s for one
                        broker here; a run of 200,000 took 0.3 s, too short to hold a rate)
  --broker-bin PATH     rumor broker binary (default target/release/broker)
  --bench-bin PATH      rumor bench binary (default target/release/bench)
  --no-build            never run cargo; fail when a binary is missing
  -h, --help            this help

The default binaries are built (cargo build --release) only when missing.
Batches: 1000 messages a request on 4 connections; single publishes: wrk
with 2 threads and 50 connections. Ratios are cluster/one broker, of the
medians and of each round's pair.
EOF
}

# ---------------------------------------------------------------- arguments

runs=${RUNS:-3}
seconds=3
batch_messages=1000000
quick=0
build=1
broker_bin=
bench_bin=
readonly batch=1000 batch_connections=4 clients=50 wrk_threads=2 payload_bytes=100
# The targets, cluster/one broker, and this script's reading of "lag
# bounded": every replica holds every message within this many ms.
readonly batch_target=0.45 single_target=0.6 lag_bound_ms=1000
# A replica that has not caught up this many seconds after wrk exited
# fails the run (as `bench publish --replica` does after 60 s).
readonly lag_deadline=60

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) need_value "$@"; runs=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --seconds) need_value "$@"; seconds=$2; shift 2 ;;
        --batch-messages) need_value "$@"; batch_messages=$2; shift 2 ;;
        --broker-bin) need_value "$@"; broker_bin=$2; shift 2 ;;
        --bench-bin) need_value "$@"; bench_bin=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

if [[ $quick -eq 1 ]]; then
    runs=1
    seconds=1
    batch_messages=20000
fi

need_positive "runs=$runs" "seconds=$seconds" "batch-messages=$batch_messages"

# ---------------------------------------------------------------- tools

command -v python3 >/dev/null || die "python3 is needed (to poll the replicas and parse the reports)"
command -v curl >/dev/null || die "curl is needed (to poll the brokers' /health)"
command -v wrk >/dev/null || install_packages wrk

cd "$root"
resolve_rumor_bins

# ---------------------------------------------------------------- processes

make_work_dir bench-cluster
alone_pid= alone_port=       # the broker alone
cluster_pids=() cluster_ports=() # the cluster: broker 1, then its replicas 2 and 3

# Whether the broker on port $1 sees the $2 members of its cluster alive.
cluster_formed() {
    curl -sf -m 5 "http://127.0.0.1:$1/cluster" | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
sys.exit(0 if len(members) == int(sys.argv[1]) and all(m["alive"] for m in members) else 1)' "$2"
}

# Starts the broker alone and the cluster for round $1, in data
# directories of their own.
start_all() {
    local i
    start_brokers "alone-$1" 1 fsync --mode gossip
    alone_pid=${started_pids[0]}
    alone_port=${started_ports[0]}
    start_brokers "cluster-$1" 3 fsync --mode gossip
    cluster_pids=("${started_pids[@]}")
    cluster_ports=("${started_ports[@]}")
    for i in 0 1 2; do
        wait_ready "${cluster_pids[i]}" 30 cluster_formed "${cluster_ports[i]}" 3 \
            || die "broker $((i + 1)) of the cluster (port ${cluster_ports[i]}) does not see all three alive"
    done
}

# Stops the brokers of round $1 and removes their data, so that the next
# round's brokers start empty and every round measures the same thing:
# brokers kept through the rounds held several GB by the later ones,
# which ran at about half the rate of the first (BENCHMARKS.md, seventh
# look; its page-cache reading is qualified in the eighth).
stop_all() {
    local i
    stop_pid "$alone_pid" "the broker alone"
    for i in 0 1 2; do
        stop_pid "${cluster_pids[i]}" "broker $((i + 1)) of the cluster"
    done
    rm -rf "$work_dir/alone-$1" "$work_dir/cluster-$1"
}

# Prints the CPU time the processes $2... took together over $1 seconds,
# in % of one core (/proc/PID/stat, user and system).
cpu_over() {
    python3 - "$@" <<'EOF'
import os, sys, time

seconds, pids = float(sys.argv[1]), sys.argv[2:]
tck = os.sysconf("SC_CLK_TCK")

def ticks():
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total

t0 = ticks()
time.sleep(seconds)
print(f"{(ticks() - t0) / tck / seconds * 100:.1f}")
EOF
}

# ---------------------------------------------------------------- measurements

# One `bench publish` run of $2 messages in batches of 1000 to broker port
# $1, with --replica for each port $3...; checks the messages it reports
# and the topic's count on port $1, and prints "rate[,lag,...]": messages
# per second, then each replica's lag in ms.
batch_run() {
    local port=$1 m=$2 out topic p replica_flags=()
    shift 2
    for p in "$@"; do
        replica_flags+=(--replica "127.0.0.1:$p")
    done
    out=$("$bench_bin" publish --host 127.0.0.1 --port "$port" --connections "$batch_connections" \
        --messages "$m" --payload-bytes "$payload_bytes" --batch "$batch" --json \
        "${replica_flags[@]}" 2>"$work_dir/bench.err") \
        || { cat "$work_dir/bench.err" >&2; die "bench publish to port $port failed"; }
    topic=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["topic"])' "$out") \
        || die "cannot read the topic from bench publish: $out"
    python3 -c '
import json, sys
r, m, held, replicas = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lags = [x["caught_up_ms"] for x in r.get("replicas", [])]
if r["messages"] != m or held != m or len(lags) != replicas:
    sys.exit(1)
print(",".join(str(v) for v in [r["messages_per_sec"]] + lags))' \
        "$out" "$m" "$(rumor_count "$port" "$topic")" "$#" \
        || die "bench publish of $m messages to port $port: $out, but topic $topic holds $(rumor_count "$port" "$topic")"
}

# Runs the command $4... (wrk) with its output into file $3, then, when
# ports $2 (space-separated) are given, reads broker port $1's GET
# /cluster (its id and `have` of its own events) and each replica's every
# 10 ms until its `have` of that origin covers it, i.e. it holds every
# message the broker held when the command exited. Prints each replica's
# lag, in ms from the command's exit, comma-separated; fails after
# $lag_deadline s.
run_then_poll() {
    python3 - "$lag_deadline" "$@" <<'EOF'
import json, subprocess, sys, time, urllib.request

deadline, port, replicas, out, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4], sys.argv[5:]

def cluster(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p}/cluster", timeout=10) as r:
        return json.load(r)

with open(out, "w") as f:
    status = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
exited = time.monotonic()
if status != 0:
    sys.exit(status)
if not replicas:
    sys.exit(0)
me = cluster(port)
origin = me["self"]
target = me["have"][origin]
lags = {}
while True:
    for p in replicas:
        if p not in lags and cluster(p)["have"].get(origin, 0) >= target:
            lags[p] = (time.monotonic() - exited) * 1000
    if len(lags) == len(replicas):
        break
    if time.monotonic() - exited > deadline:
        held = {p: cluster(p)["have"].get(origin, 0) for p in replicas}
        sys.exit(f"replicas held {held} of {origin}'s events, not all up to {target}, "
                 f"{deadline:.0f} s after wrk exited")
    time.sleep(0.01)
print(",".join(f"{lags[p]:.3f}" for p in replicas))
EOF
}

# One wrk run of single publishes ($2 seconds, 2 threads, 50 connections)
# to a fresh topic of broker port $1; with replica ports $3..., also their
# lag (see run_then_poll). Checks that every answer was a success and that
# the topic holds at least as many messages as wrk counted answers, on the
# broker and on each replica; prints "rate[,lag,...]".
single_run() {
    local port=$1 secs=$2 topic=wrk-$RANDOM$RANDOM lags out p requests held
    shift 2
    wrk_prepare "$port" "$topic"
    lags=$(run_then_poll "$port" "$*" "$work_dir/wrk.out" \
        wrk --threads "$wrk_threads" --connections "$clients" --duration "${secs}s" \
        --script "$work_dir/publish.lua" "http://127.0.0.1:$port/topics/$topic/messages") \
        || { cat "$work_dir/wrk.out" >&2; die "wrk, or waiting for the replicas, failed"; }
    out=$(<"$work_dir/wrk.out")
    wrk_check "$out" "$port" "$topic"
    requests=$(wrk_requests "$out")
    for p in "$@"; do
        held=$(rumor_count "$p" "$topic")
        [[ $held -ge $requests ]] \
            || die "replica port $p: topic $topic holds $held messages after wrk counted $requests answers"
    done
    echo "$(wrk_rate "$out")${lags:+,$lags}"
}

# ---------------------------------------------------------------- run

value=$(payload_value "$payload_bytes")
machine_facts
load_start=$(load_avg)

# Starts round $1's brokers and gives each one short untimed run, so that
# the first timed run does not pay for file creation, first connections
# and the like.
start_round() {
    local i
    start_all "$1"
    note "round $1/$runs: alone 127.0.0.1:$alone_port (pid $alone_pid)"
    for i in 0 1 2; do
        note "round $1/$runs: cluster broker $((i + 1)) 127.0.0.1:${cluster_ports[i]} (pid ${cluster_pids[i]})"
    done
    replicas=("${cluster_ports[1]}" "${cluster_ports[2]}")
    note "round $1/$runs: warming up"
    batch_run "$alone_port" 10000 >/dev/null
    batch_run "${cluster_ports[0]}" 10000 "${replicas[@]}" >/dev/null
    single_run "$alone_port" 1 >/dev/null
    single_run "${cluster_ports[0]}" 1 "${replicas[@]}" >/dev/null
}

alone_batches=() cluster_batches=() alone_singles=() cluster_singles=()
alone_stolen=() cluster_stolen=()
for ((run = 1; run <= runs; run++)); do
    start_round "$run"
    if ((run == 1)); then
        note "measuring what the idle brokers take (2 s)"
        idle_cluster=$(cpu_over 2 "${cluster_pids[@]}")
        idle_alone=$(cpu_over 2 "$alone_pid")
    fi
    note "round $run/$runs: one broker, batches of $batch"
    noting_steal alone_batches alone_stolen batch_run "$alone_port" "$batch_messages"
    note "round $run/$runs: cluster, batches of $batch"
    noting_steal cluster_batches cluster_stolen batch_run "${cluster_ports[0]}" "$batch_messages" "${replicas[@]}"
    note "round $run/$runs: one broker, single publishes (wrk)"
    alone_singles+=("$(single_run "$alone_port" "$seconds")")
    note "round $run/$runs: cluster, single publishes (wrk)"
    cluster_singles+=("$(single_run "${cluster_ports[0]}" "$seconds" "${replicas[@]}")")
    stop_all "$run"
done

cat <<EOF
# rumor: a three-broker cluster against one broker, $(date -u '+%Y-%m-%d %H:%M UTC')
rumor:     $git_rev ($git_head), $(report_path "$broker_bin")
           $("$broker_bin" --version 2>&1 | head -n 1); $("$bench_bin" --version 2>&1 | head -n 1)
wrk:       $(wrk --version 2>&1 | head -n 1 | sed 's/ Copyright.*//')
machine:   $(machine_line)
data dirs: file system ${fs_type:-unknown} (\$TMPDIR); all four brokers write there
load avg:  $load_start at the start, $(load_avg) at the end (1/5/15 min)

brokers:   --durability fsync --mode gossip, the rest default (--max-replica-lag 10000);
           started afresh for every round, on free 127.0.0.1 ports with empty data dirs
           (removed after the round): one alone (empty --peers), and a cluster of three with
           a peer list naming all three; publishes go to its broker 1, brokers 2 and 3 are
           the replicas. All four run through the round; idle, after round 1's warm-up, the
           cluster took ${idle_cluster}% of one core in all, the broker alone ${idle_alone}% (2 s each)
batches:   bench publish --batch $batch --connections $batch_connections --messages $batch_messages
           (on the cluster also --replica for brokers 2 and 3); its count and the topic's checked
singles:   wrk -t$wrk_threads -c$clients -d${seconds}s, a Lua POST of one message a request; no non-2xx,
           the topic's count >= wrk's answers (on the cluster also on each replica)
lag:       from the last acknowledgement to a replica holding every message: batches, by bench
           publish (GET /cluster \`have\` every 10 ms); singles, from wrk's exit, by this script
           (every 10 ms, until \`have\` covers what broker 1 held when wrk exited)
payload $payload_bytes bytes; $runs round(s), each in turn: one broker batches, cluster batches,
one broker singles, cluster singles
stolen:    % of the machine's time the host took (/proc/stat steal) during each round's batch run:
           one broker ${alone_stolen[*]}; three brokers ${cluster_stolen[*]}
EOF

python3 - "$runs" "$batch_messages" "$batch_target" "$single_target" "$lag_bound_ms" \
    "one broker, batches of $batch, $batch_messages msg" "${alone_batches[@]}" \
    "three brokers, batches of $batch, $batch_messages msg" "${cluster_batches[@]}" \
    "one broker, single publishes (wrk), $seconds s" "${alone_singles[@]}" \
    "three brokers, single publishes (wrk), $seconds s" "${cluster_singles[@]}" <<'EOF'
import statistics
import sys

runs, batch_messages = int(sys.argv[1]), int(sys.argv[2])
batch_target, single_target, lag_bound = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
args = sys.argv[6:]
rows = []
while args:
    label = args[0]
    values = [[float(x) for x in v.split(",")] for v in args[1:1 + runs]]
    args = args[1 + runs:]
    rows.append((label, values))
med = statistics.median

width = max(len(label) for label, _ in rows)
print()
print(f"{'messages/s':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}   runs")
for label, values in rows:
    rates = [v[0] for v in values]
    print(f"{label:<{width}}  {med(rates):>8.0f}  {min(rates):>8.0f}  {max(rates):>8.0f}"
          f"   {' '.join(f'{r:.0f}' for r in rates)}")

print()
print("replicas' lag: ms from the last acknowledgement until the replica held every message")
lag_rows = []
for kind, (_, values) in (("batches", rows[1]), ("singles", rows[3])):
    for replica in (0, 1):
        lag_rows.append((f"{kind}, replica {replica + 2}", [v[1 + replica] for v in values]))
lag_width = max(len(label) for label, _ in lag_rows)
print(f"{'':<{lag_width}}  {'median':>8}  {'min':>8}  {'max':>8}   runs")
for label, lags in lag_rows:
    print(f"{label:<{lag_width}}  {med(lags):>8.1f}  {min(lags):>8.1f}  {max(lags):>8.1f}"
          f"   {' '.join(f'{x:.1f}' for x in lags)}")

print()
print("three brokers/one broker: ratio of the medians [min-max of the ratios of each round]")
for name, (cluster, alone), target in (
    ("batches of 1000", (rows[1][1], rows[0][1]), batch_target),
    ("single publishes (wrk)", (rows[3][1], rows[2][1]), single_target),
):
    a, b = [v[0] for v in cluster], [v[0] for v in alone]
    ratio = med(a) / med(b)
    pairs = [x / y for x, y in zip(a, b)]
    verdict = "met" if ratio >= target else "not met"
    print(f"  {name:<24} {ratio:5.3f}  (target >= {target:.2f}: {verdict})"
          f"  [{min(pairs):.2f}-{max(pairs):.2f}]")
worst = max(max(lags) for _, lags in lag_rows)
worst_batch = max(max(lags) for label, lags in lag_rows if label.startswith("batches"))
batch_run_s = batch_messages / med([v[0] for v in rows[1][1]])
verdict = "met" if worst <= lag_bound else "not met"
name = "replicas' lag bounded"
print(f"  {name:<24} worst {worst:.1f} ms; every replica caught up in every run"
      f" (bounded here: <= {lag_bound:.0f} ms: {verdict})")
print(f"  {'':<24} the worst batch lag, {worst_batch:.1f} ms, is {worst_batch / 10 / batch_run_s:.0f}%"
      f" of a cluster batch run ({batch_run_s:.2f} s at the median rate)")
if batch_messages < 100_000:
    print()
    print(f"note: {batch_messages} messages a batch run are few: pacing holds broker 1's writes only")
    print("once a replica lacks 10,000 of its events, so much of such a run goes at broker 1's own")
    print("pace and the cluster's batch rate reads high; the default is 1,000,000")
EOF
