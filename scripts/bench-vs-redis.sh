#!/usr/bin/env bash
# rumor vs Redis, side by side, in one run: publish throughput and
# publish-to-delivery latency of rumor brokers (--durability fsync) against
# Redis streams (XADD, AOF with appendfsync always), all on this machine, on
# loopback, 100-byte payloads.
#
# Latency, at 1,000 msg/s for --latency-seconds each, all by `bench latency`
# (the same pacing, stamps and percentiles for both):
#
#   a. Redis XADD on one connection, one consumer in XREAD BLOCK on another
#   b. rumor long poll, one broker (alone)
#   c. rumor SSE, one broker
#   d. rumor long poll across two brokers: publish on A, subscribe on B
#      (a second pair of brokers, peered with each other)
#   e. rumor SSE across two brokers
#
# Each round runs a-e in turn, --runs rounds. The report gives the median
# p50 and p99 of each with their ranges, and the ratios rumor/Redis against
# the targets: one broker p50 <= 1.5x Redis's and p99 <= Redis's, two
# brokers p99 <= 3x Redis's, for long polls and SSE alike. The latency runs
# come first, while the lone broker's database is fresh; the pair is
# stopped before the throughput runs.
#
# With --latency-cpus S:L every round runs a-e a second time with the
# servers (every thread of redis-server and of the three brokers) moved
# onto CPUs S and `bench` on CPUs L (taskset), and the report gives those
# rounds apart. Sharing the CPUs, a single-threaded Redis mostly runs on
# the CPU of the load generator's thread it answers, which a broker's
# hand-offs between threads cannot; apart, every message crosses between
# CPUs twice for both (BENCHMARKS.md, twelfth look).
#
# Throughput:
#
#   1. Redis XADD, 50 clients, one command per round trip   (redis-benchmark)
#   2. rumor single publishes, 50 connections               (bench publish --batch 1)
#   3. Redis XADD, 50 clients, pipelined -P 32              (redis-benchmark -P 32)
#   4. rumor batches of 1000, K connections                 (bench publish --batch 1000)
#   5. rumor single publishes, 50 connections, by wrk -t2   (a load generator in C,
#      as lean as redis-benchmark), with the broker's CPU split meanwhile:
#      its HTTP workers, its writer thread, the rest of it, and the
#      machine's idle time
#   6. rumor GET /health, 50 connections, by wrk -t2        (what the HTTP server and
#      the load generator can do at most: it must be well above 5)
#
# Each of the six is repeated --runs times, interleaved (Redis, rumor,
# Redis, rumor, ...) so that machine noise hits both alike. Every round
# starts redis-server and the lone broker afresh, with empty data
# directories, so that every round measures the same thing: a broker
# kept through five rounds of a million batch messages held several GB
# by the later ones. The report
# (stdout) gives the versions and the machine, then per measurement the
# median and the min-max range, and the ratios against their targets:
# single vs XADD >= 1.5 (by bench and by wrk), batches vs pipelined XADD
# >= 1.5, GET /health >= 2x single publishes by wrk.
# Progress goes to stderr, so `scripts/bench-vs-redis.sh > out.txt` keeps
# only the report.
#
# Installs redis-server, redis-tools and wrk (Debian packages) when missing.
# Starts its own redis-server and rumor brokers (one alone, and a pair) on
# free 127.0.0.1 ports in a temporary directory (under $TMPDIR, so fsync
# hits that file system) and stops them all at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"

usage() {
    cat <<'EOF'
Usage: scripts/bench-vs-redis.sh [options]

  --runs R                  repetitions of each measurement, interleaved (default 5; env RUNS)
  --quick                   tiny run to check the script works: 1 run, small counts, 1 s latency runs
  --latency-seconds S       seconds per latency run, at 1000 msg/s (default 5)
  --latency-cpus S:L        also run each latency round with the servers on CPUs S
                            and the load generator on CPUs L (taskset lists, e.g. 0:1)
  --redis-requests N        XADDs per Redis run, one per round trip (default 30000)
  --redis-pipelined N       XADDs per pipelined Redis run, -P 32 (default 500000)
  --rumor-messages M        messages per rumor single-publish run (default 40000)
  --rumor-batch-messages M  messages per rumor batch run (default 1000000)
  --wrk-seconds S           seconds per wrk run of rumor single publishes (default 3)
  --batch-connections K     connections for rumor batches of 1000 (default 4)
  --no-build                use target/release/{broker,bench} as they are
  -h, --help                this help

Defaults aim at 1-5 s per run on a 2-core machine (a batch run of 200,000
messages took 0.3 s, too short to measure a rate: its start weighed in,
and it swung widely from run to run). Clients: 50 for Redis
(redis-benchmark -c 50) and rumor single publishes; K for rumor batches
(each batch request already carries 1000 messages; with 2 cores, 4 keep
the broker's writer busy most of the time while the next batches are
parsed; 8 gave 3-5% more in pairs, BENCHMARKS.md, sixth look).
EOF
}

# ---------------------------------------------------------------- arguments

runs=${RUNS:-5}
redis_n=30000
redis_pipelined_n=500000
rumor_m=40000
rumor_batch_m=1000000
batch_connections=4
wrk_seconds=3
latency_seconds=5
latency_cpus=
quick=0
build=1
readonly clients=50 pipeline=32 batch=1000 payload_bytes=100 latency_rate=1000

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) need_value "$@"; runs=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --redis-requests) need_value "$@"; redis_n=$2; shift 2 ;;
        --redis-pipelined) need_value "$@"; redis_pipelined_n=$2; shift 2 ;;
        --rumor-messages) need_value "$@"; rumor_m=$2; shift 2 ;;
        --rumor-batch-messages) need_value "$@"; rumor_batch_m=$2; shift 2 ;;
        --batch-connections) need_value "$@"; batch_connections=$2; shift 2 ;;
        --wrk-seconds) need_value "$@"; wrk_seconds=$2; shift 2 ;;
        --latency-seconds) need_value "$@"; latency_seconds=$2; shift 2 ;;
        --latency-cpus) need_value "$@"; latency_cpus=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

if [[ $quick -eq 1 ]]; then
    runs=1
    redis_n=2000
    redis_pipelined_n=20000
    rumor_m=2000
    rumor_batch_m=20000
    wrk_seconds=1
    latency_seconds=1
fi

need_positive "runs=$runs" "redis-requests=$redis_n" "redis-pipelined=$redis_pipelined_n" \
    "rumor-messages=$rumor_m" "rumor-batch-messages=$rumor_batch_m" \
    "batch-connections=$batch_connections" "wrk-seconds=$wrk_seconds" \
    "latency-seconds=$latency_seconds"

server_cpus= bench_cpus=
if [[ -n $latency_cpus ]]; then
    [[ $latency_cpus =~ ^([0-9,-]+):([0-9,-]+)$ ]] \
        || die "--latency-cpus takes S:L, two CPU lists such as 0:1 (got '$latency_cpus')"
    server_cpus=${BASH_REMATCH[1]} bench_cpus=${BASH_REMATCH[2]}
fi

# ---------------------------------------------------------------- tools

command -v python3 >/dev/null || die "python3 is needed (to parse the reports)"
command -v curl >/dev/null || die "curl is needed (to poll the broker's /health)"
command -v cargo >/dev/null || [[ $build -eq 0 ]] || die "cargo is needed to build rumor (or pass --no-build)"
[[ -z $latency_cpus ]] || command -v taskset >/dev/null || die "taskset (util-linux) is needed for --latency-cpus"

readonly packages=(redis-server redis-tools wrk)

for tool in redis-server redis-cli redis-benchmark wrk; do
    command -v "$tool" >/dev/null || { install_packages "${packages[@]}"; break; }
done

cd "$root"
if [[ $build -eq 1 ]]; then
    build_rumor
fi
bin_dir=${CARGO_TARGET_DIR:-target}/release
broker_bin=$bin_dir/broker
bench_bin=$bin_dir/bench
[[ -x $broker_bin && -x $bench_bin ]] || die "$broker_bin or $bench_bin not found (build first)"

# ---------------------------------------------------------------- processes

make_work_dir bench-vs-redis
redis_pid=
broker_pid= # the broker alone
pair_pids=() pair_ports=() # the two peered brokers: A, then B

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]]
}

# A free port can be taken between the probe and the bind: try a few.
start_redis() {
    local attempt
    mkdir -p "$work_dir/redis"
    for attempt in 1 2 3; do
        redis_port=$(free_ports 1)
        redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work_dir/redis" \
            --appendonly yes --appendfsync always --save '' --daemonize no \
            --logfile "$work_dir/redis.log" &
        redis_pid=$!
        track_pid "$redis_pid" redis-server
        if wait_ready "$redis_pid" 10 redis_ping; then return 0; fi
        stop_pid "$redis_pid" redis-server
        redis_pid=
        note "redis-server on port $redis_port did not answer PING (attempt $attempt)"
    done
    tail -n 20 "$work_dir/redis.log" >&2 2>/dev/null || true
    die "redis-server did not start; see its log above"
}

# The broker alone: no peers, --durability fsync.
start_broker() {
    start_brokers alone 1 fsync
    broker_pid=${started_pids[0]}
    broker_port=${started_ports[0]}
}

# Stops redis-server and the broker alone, and removes their data.
stop_alone() {
    stop_pid "$broker_pid" "the broker alone"
    stop_pid "$redis_pid" redis-server
    broker_pid= redis_pid=
    rm -rf "$work_dir/alone" "$work_dir/redis"
}

# Two brokers peered with each other (both in their peer list).
start_pair() {
    start_brokers pair 2 fsync
    pair_pids=("${started_pids[@]}")
    pair_ports=("${started_ports[@]}")
}

stop_pair() {
    local pid
    for pid in "${pair_pids[@]}"; do
        stop_pid "$pid" "broker of the pair"
    done
    pair_pids=()
}

# ---------------------------------------------------------------- measurements

value=$(payload_value "$payload_bytes")

# Prints XADDs per second of one redis-benchmark run; $1 requests, $2 pipeline.
# redis-benchmark 7.0 (Debian bookworm) has no `-t xadd`, and -d applies to
# SET/GET only, so the command is given whole, with a 100-byte value. Every
# run appends to the stream `bench`, checked and deleted afterwards.
redis_run() {
    local n=$1 p=$2 out rps len
    out=$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$clients" -n "$n" -P "$p" --csv \
        XADD bench '*' field "$value" 2>"$work_dir/redis-benchmark.err") \
        || { cat "$work_dir/redis-benchmark.err" >&2; die "redis-benchmark failed"; }
    rps=$(python3 -c '
import csv, sys
rows = [r for r in csv.reader(sys.stdin) if r]
if len(rows) < 2 or rows[0][:2] != ["test", "rps"]:
    sys.exit(1)
print(float(rows[-1][1]))' <<<"$out") || die "cannot read requests/s from redis-benchmark: $out"
    len=$(redis-cli -h 127.0.0.1 -p "$redis_port" xlen bench)
    [[ $len == "$n" ]] || die "redis stream holds $len entries after $n XADDs (errors from the server?)"
    redis-cli -h 127.0.0.1 -p "$redis_port" del bench >/dev/null
    echo "$rps"
}

# Prints messages per second of one `bench publish` run; $1 messages,
# $2 connections, $3 batch.
rumor_run() {
    local m=$1 c=$2 b=$3 out rate
    out=$("$bench_bin" publish --host 127.0.0.1 --port "$broker_port" --connections "$c" \
        --messages "$m" --payload-bytes "$payload_bytes" --batch "$b" --json \
        2>"$work_dir/bench.err") \
        || { cat "$work_dir/bench.err" >&2; die "bench publish failed"; }
    rate=$(python3 -c '
import json, sys
r = json.load(sys.stdin)
if r["messages"] != int(sys.argv[1]):
    sys.exit(1)
print(float(r["messages_per_sec"]))' "$m" <<<"$out") \
        || die "cannot read messages_per_sec from bench publish: $out"
    echo "$rate"
}

# Prints requests per second of one wrk run of single publishes ($1
# seconds, 50 connections, two threads: one was the bottleneck)
# to a fresh topic, after checking that every answer was a success and
# that the topic holds at least as many messages as wrk counted answers
# (requests still in flight when wrk stops are published but not counted).
# The broker's CPU split over the run goes to $work_dir/cpu-split-last.
wrk_run() {
    local seconds=$1 topic=wrk-$RANDOM$RANDOM out before
    wrk_prepare "$broker_port" "$topic"
    before=$(cpu_counters "$broker_pid")
    out=$(wrk --threads 2 --connections "$clients" --duration "${seconds}s" \
        --script "$work_dir/publish.lua" "http://127.0.0.1:$broker_port/topics/$topic/messages" \
        2>&1) || { echo "$out" >&2; die "wrk failed"; }
    cpu_split "$before" "$(cpu_counters "$broker_pid")" >"$work_dir/cpu-split-last"
    wrk_check "$out" "$broker_port" "$topic"
    wrk_rate "$out"
}

# Prints requests per second of one wrk run of GET /health ($1 seconds, 50
# connections, two threads), after checking every answer was a success.
health_run() {
    local out
    out=$(wrk --threads 2 --connections "$clients" --duration "${1}s" \
        "http://127.0.0.1:$broker_port/health" 2>&1) || { echo "$out" >&2; die "wrk failed"; }
    wrk_ok "$out"
    wrk_rate "$out"
}

# Prints CPU clock ticks so far: the broker of pid $1's HTTP workers
# (threads actix-rt|system:N), its writer thread (store-writer), the rest
# of the process (its other threads, those that ended included), then the
# machine's idle (idle + iowait) and all.
cpu_counters() {
    local task name ticks http=0 writer=0 other
    # The process's own utime and stime count its ended threads too.
    other=$(sed -E 's/.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }')
    for task in /proc/"$1"/task/*; do
        name=$(<"$task/comm")
        # utime and stime: fields 14 and 15, counted after the ") " that
        # ends the thread's name, which may hold spaces.
        ticks=$(sed -E 's/.*\) //' "$task/stat" | awk '{ print $12 + $13 }')
        case $name in
            actix-rt*) http=$((http + ticks)) other=$((other - ticks)) ;;
            store-writer) writer=$((writer + ticks)) other=$((other - ticks)) ;;
        esac
    done
    awk -v h="$http" -v w="$writer" -v o="$other" \
        '/^cpu / { print h, w, o, $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat
}

# Prints the CPU split between two cpu_counters readings $1 and $2, in %
# of one core: HTTP workers, writer, the broker's other threads, machine
# idle.
cpu_split() {
    python3 -c '
import os, sys
a, b = [list(map(int, s.split())) for s in sys.argv[1:3]]
d = [y - x for x, y in zip(a, b)]
cores = os.cpu_count() or 1
core_ticks = d[4] / cores  # ticks of one core over the run
print(" ".join(f"{100 * t / core_ticks:.0f}" for t in (d[0], d[1], d[2], d[3])))
' "$1" "$2"
}

# Prints "p50/p99" (ms) of one `bench latency` run of $1 seconds at
# $latency_rate msg/s against the target of the flags $2..., after checking
# that every message was acknowledged and received.
latency_run() {
    local seconds=$1 out
    shift
    out=$("${bench_prefix[@]}" "$bench_bin" latency --rate "$latency_rate" --seconds "$seconds" \
        --payload-bytes "$payload_bytes" --json "$@" 2>"$work_dir/bench.err") \
        || { cat "$work_dir/bench.err" >&2; die "bench latency $* failed"; }
    python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_ms"]
if not l or r["sent"] != int(sys.argv[1]) or r["received"] != r["sent"]:
    sys.exit(1)
print("%s/%s" % (l["p50"], l["p99"]))' "$((latency_rate * seconds))" <<<"$out" \
        || die "bench latency $*: not every message was sent and received: $out"
}

# The command `bench latency` runs under: nothing, or taskset (see
# --latency-cpus).
bench_prefix=()

# Moves every thread of the servers of the latency runs onto CPUs $1.
place_servers() {
    local pid
    for pid in "$redis_pid" "$broker_pid" "${pair_pids[@]}"; do
        taskset -a -p -c "$1" "$pid" >/dev/null || die "taskset could not move pid $pid onto CPUs $1"
    done
}

# Prints "Redis poll-one sse-one poll-two sse-two", each "p50/p99", of
# latency round $1 (named $2 in the progress lines).
latency_round() {
    local run=$1 name=$2 results=()
    note "round $run/$runs$name: latency, Redis XADD -> XREAD BLOCK"
    results+=("$(latency_run "$latency_seconds" "${redis_target[@]}")")
    note "round $run/$runs$name: latency, rumor long poll, one broker"
    results+=("$(latency_run "$latency_seconds" "${alone_target[@]}" --transport poll)")
    note "round $run/$runs$name: latency, rumor SSE, one broker"
    results+=("$(latency_run "$latency_seconds" "${alone_target[@]}" --transport sse)")
    note "round $run/$runs$name: latency, rumor long poll, A -> B"
    results+=("$(latency_run "$latency_seconds" "${pair_target[@]}" --transport poll)")
    note "round $run/$runs$name: latency, rumor SSE, A -> B"
    results+=("$(latency_run "$latency_seconds" "${pair_target[@]}" --transport sse)")
    echo "${results[*]}"
}

# ---------------------------------------------------------------- run

machine_facts

load_start=$(load_avg)
start_redis
start_broker
start_pair
note "redis-server on 127.0.0.1:$redis_port (pid $redis_pid), broker on 127.0.0.1:$broker_port (pid $broker_pid)"
note "pair: A on 127.0.0.1:${pair_ports[0]} (pid ${pair_pids[0]}), B on 127.0.0.1:${pair_ports[1]} (pid ${pair_pids[1]})"

# The targets of `bench latency`, as its flags.
redis_target=(--redis "127.0.0.1:$redis_port")
alone_target=(--host 127.0.0.1 --port "$broker_port")
pair_target=(--host 127.0.0.1 --port "${pair_ports[0]}"
    --subscriber-host 127.0.0.1 --subscriber-port "${pair_ports[1]}")

# One short untimed run of each, so the first timed run does not pay for
# file creation, first connections and the like.
note "warming up (latency)"
latency_run 1 "${redis_target[@]}" >/dev/null
latency_run 1 "${alone_target[@]}" >/dev/null
latency_run 1 "${pair_target[@]}" >/dev/null

shared_latency=() apart_latency=()
for ((run = 1; run <= runs; run++)); do
    shared_latency+=("$(latency_round "$run" "")")
    if [[ -n $latency_cpus ]]; then
        place_servers "$server_cpus"
        bench_prefix=(taskset -c "$bench_cpus")
        apart_latency+=("$(latency_round "$run" " (servers on CPUs $server_cpus, bench on $bench_cpus)")")
        bench_prefix=()
        place_servers "$(taskset -p -c $$ | sed 's/.*: //')"
    fi
done
# The pair would take CPU from the throughput runs.
stop_pair

# Starts redis-server and the broker alone afresh for throughput round
# $1, and warms both up with short untimed runs.
start_round() {
    stop_alone
    start_redis
    start_broker
    note "run $1/$runs: redis-server on 127.0.0.1:$redis_port (pid $redis_pid), broker on 127.0.0.1:$broker_port (pid $broker_pid)"
    note "run $1/$runs: warming up"
    redis_run 1000 1 >/dev/null
    rumor_run 1000 "$clients" 1 >/dev/null
    wrk_run 1 >/dev/null
}

redis_single=() rumor_single=() redis_pipelined=() rumor_batches=() rumor_wrk=() rumor_health=()
redis_pipelined_stolen=() rumor_batches_stolen=()
: >"$work_dir/cpu-split"
for ((run = 1; run <= runs; run++)); do
    start_round "$run"
    note "run $run/$runs: Redis XADD"
    redis_single+=("$(redis_run "$redis_n" 1)")
    note "run $run/$runs: rumor single publishes"
    rumor_single+=("$(rumor_run "$rumor_m" "$clients" 1)")
    note "run $run/$runs: Redis XADD -P $pipeline"
    noting_steal redis_pipelined redis_pipelined_stolen redis_run "$redis_pipelined_n" "$pipeline"
    note "run $run/$runs: rumor batches of $batch"
    noting_steal rumor_batches rumor_batches_stolen rumor_run "$rumor_batch_m" "$batch_connections" "$batch"
    note "run $run/$runs: rumor single publishes by wrk"
    rumor_wrk+=("$(wrk_run "$wrk_seconds")")
    cat "$work_dir/cpu-split-last" >>"$work_dir/cpu-split"
    note "run $run/$runs: rumor GET /health by wrk"
    rumor_health+=("$(health_run "$wrk_seconds")")
done

cat <<EOF
# rumor vs Redis: publish throughput and latency, $(date -u '+%Y-%m-%d %H:%M UTC')
rumor:    $git_rev ($git_head), built --release
redis:    $(redis-server --version)
          $(redis-benchmark --version)
wrk:      $(wrk --version 2>&1 | head -n 1)
machine:  $(machine_line)
data dir: file system ${fs_type:-unknown} (\$TMPDIR); both fsync there
load avg: $load_start at the start, $(load_avg) at the end (1/5/15 min)

redis-server: 127.0.0.1 only, appendonly yes, appendfsync always, save "" (no RDB)
rumor broker: alone (empty --peers), --durability fsync; for latency across
          two brokers also a pair listing each other, the same flags
payload ${payload_bytes} bytes; ${runs} run(s) of each, interleaved Redis/rumor;
          redis-server and the broker alone started afresh, with empty data
          directories, for every throughput run
stolen:   % of the machine's time the host took (/proc/stat steal) during each batch run:
          Redis -P $pipeline ${redis_pipelined_stolen[*]}; rumor ${rumor_batches_stolen[*]}
EOF

python3 - "$runs" \
    "Redis XADD, $clients clients, ${redis_n} req" "${redis_single[@]}" \
    "rumor publish, $clients conns, batch 1, ${rumor_m} msg" "${rumor_single[@]}" \
    "Redis XADD, $clients clients, -P $pipeline, ${redis_pipelined_n} req" "${redis_pipelined[@]}" \
    "rumor publish, $batch_connections conns, batch $batch, ${rumor_batch_m} msg" "${rumor_batches[@]}" \
    "rumor publish by wrk -t2, $clients conns, batch 1, ${wrk_seconds} s" "${rumor_wrk[@]}" \
    "rumor GET /health by wrk -t2, $clients conns, ${wrk_seconds} s" "${rumor_health[@]}" <<'EOF'
import statistics
import sys

runs = int(sys.argv[1])
args = sys.argv[2:]
rows = []
while args:
    label, values = args[0], [float(v) for v in args[1:1 + runs]]
    args = args[1 + runs:]
    rows.append((label, values))

width = max(len(label) for label, _ in rows)
print()
print(f"{'messages/s':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}   runs")
for label, values in rows:
    print(f"{label:<{width}}  {statistics.median(values):>9.0f}  {min(values):>9.0f}"
          f"  {max(values):>9.0f}   {' '.join(f'{v:.0f}' for v in values)}")

print()
print("rumor/Redis: ratio of the medians [min-max of the ratios of each interleaved pair]")
for name, (rumor, redis), target in (
    ("single publishes vs XADD", (rows[1][1], rows[0][1]), 1.5),
    ("batches of 1000 vs XADD -P 32", (rows[3][1], rows[2][1]), 1.5),
    ("single publishes by wrk vs XADD", (rows[4][1], rows[0][1]), 1.5),
    ("GET /health vs publishes by wrk", (rows[5][1], rows[4][1]), 2.0),
):
    ratio = statistics.median(rumor) / statistics.median(redis)
    pairs = [a / b for a, b in zip(rumor, redis)]
    verdict = "met" if ratio >= target else "not met"
    print(f"  {name:<32} {ratio:5.2f}  (target >= {target:.1f}: {verdict})"
          f"  [{min(pairs):.2f}-{max(pairs):.2f}]")
EOF

python3 - "$work_dir/cpu-split" <<'EOF'
import os
import statistics
import sys

runs = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
print()
print(f"CPU during the wrk publish runs, % of one core (the machine has {os.cpu_count()}: {100 * (os.cpu_count() or 1)}%)")
for i, name in enumerate(("broker HTTP workers", "broker writer thread",
                          "broker other threads", "machine idle (incl. iowait)")):
    values = [run[i] for run in runs]
    print(f"  {name:<29} {statistics.median(values):4.0f}  [{min(values):.0f}-{max(values):.0f}]"
          f"   {' '.join(f'{v:.0f}' for v in values)}")
EOF

cat <<EOF

latency: bench latency, ${latency_rate} msg/s for ${latency_seconds} s a run, ${runs} round(s) of the
five in turn; rumor: 8 publishing connections, one subscriber acknowledging
on receipt; Redis: XADDs pipelined on one connection, XREAD BLOCK on another
EOF

# Prints the latency table and ratios of the rounds $2... (lines of
# latency_round), under the title $1.
latency_report() {
    python3 - "$@" <<'EOF'
import statistics
import sys

title, rounds = sys.argv[1], [line.split() for line in sys.argv[2:]]
labels = ("Redis XADD -> XREAD BLOCK", "rumor long poll, one broker", "rumor SSE, one broker",
          "rumor long poll, publish on A, read on B", "rumor SSE, publish on A, read on B")
rows = []
for column, label in enumerate(labels):
    runs_of = [measured[column] for measured in rounds]
    rows.append((label, [tuple(float(ms) for ms in run.split("/")) for run in runs_of], runs_of))


def spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


width = max(len(label) for label, _, _ in rows)
print()
print(title)
print(f"{'latency, ms':<{width}}  {'p50 median [min-max]':>22}  {'p99 median [min-max]':>24}"
      "   runs p50/p99")
for label, values, runs_of in rows:
    p50s, p99s = [v[0] for v in values], [v[1] for v in values]
    print(f"{label:<{width}}  {spread(p50s):>22}  {spread(p99s):>24}   {' '.join(runs_of)}")

print()
print("rumor/Redis: ratio of the medians [min-max of the ratios of each round]")
redis = rows[0][1]
for name, row, column, target in (
    ("one broker, long poll: p50", 1, 0, 1.5),
    ("one broker, long poll: p99", 1, 1, 1.0),
    ("one broker, SSE: p50", 2, 0, 1.5),
    ("one broker, SSE: p99", 2, 1, 1.0),
    ("two brokers, long poll: p99", 3, 1, 3.0),
    ("two brokers, SSE: p99", 4, 1, 3.0),
):
    rumor = [v[column] for v in rows[row][1]]
    base = [v[column] for v in redis]
    ratio = statistics.median(rumor) / statistics.median(base)
    pairs = [a / b for a, b in zip(rumor, base)]
    verdict = "met" if ratio <= target else "not met"
    print(f"  {name:<28} {ratio:5.2f}  (target <= {target:.1f}: {verdict})"
          f"  [{min(pairs):.2f}-{max(pairs):.2f}]")
EOF
}

latency_report "sharing the CPUs:" "${shared_latency[@]}"
if [[ -n $latency_cpus ]]; then
    latency_report "servers on CPUs $server_cpus, bench latency on CPUs $bench_cpus (taskset):" \
        "${apart_latency[@]}"
fi
