# What the benchmark scripts share (bench-vs-redis.sh, bench-vs-nats.sh,
# bench-cluster.sh): messages and argument checks, Debian packages, the
# rumor binaries, a temporary directory and the processes started (all
# stopped, by pid, at exit), free ports, rumor brokers, and wrk runs of
# single publishes. Sourced, never run:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
#
# Globals it sets: root (the repository), work_dir (make_work_dir),
# spawned_pid (spawn_broker), started_pids and started_ports
# (start_brokers), git_rev, git_head, cpu_model, fs_type (machine_facts).
# Globals it reads: build, broker_bin and bench_bin (resolve_rumor_bins),
# value (the payload, for wrk_prepare).

# The sourcing script's name, the prefix of every message.
bench_script=${0##*/}

# The repository: this file is scripts/lib/bench-common.sh.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ---------------------------------------------------------------- messages, arguments

# Prints the message to stderr and exits 1.
die() {
    echo "$bench_script: $*" >&2
    exit 1
}

# Prints the message to stderr (progress; stdout is the report).
note() {
    echo "$bench_script: $*" >&2
}

# Fails unless option $1 has a non-empty value $2; call it with the
# parser's "$@".
need_value() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

# Fails unless the value of each NAME=VALUE is a positive integer (the
# message names the option --NAME).
need_positive() {
    local pair
    for pair in "$@"; do
        [[ ${pair#*=} =~ ^[1-9][0-9]*$ ]] || die "--${pair%%=*} must be a positive integer, got '${pair#*=}'"
    done
}

# ---------------------------------------------------------------- tools

# Installs the Debian packages "$@" (through sudo when not root); when the
# install fails, runs apt-get update and tries once more.
install_packages() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "$* are needed and neither root nor sudo is available"
        sudo=(sudo)
    fi
    note "installing $* (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y "$@" >&2; then
        note "install failed; running apt-get update and trying again"
        "${sudo[@]}" apt-get update >&2 || die "apt-get update failed"
        "${sudo[@]}" apt-get install -y "$@" >&2 \
            || die "apt-get install $* failed"
    fi
}

# Builds the broker and bench binaries (release) with cargo.
build_rumor() {
    note "building rumor (release): broker, bench"
    cargo build --release -p rumor --bin broker --bin bench >&2 || die "cargo build failed"
}

# Settles broker_bin and bench_bin (from --broker-bin/--bench-bin, else
# target/release/, relative to the repository, the current directory):
# the default binaries are built only when missing, and never with
# build=0 (--no-build); given ones must exist.
resolve_rumor_bins() {
    local bin_dir=${CARGO_TARGET_DIR:-target}/release
    broker_bin=${broker_bin:-$bin_dir/broker}
    bench_bin=${bench_bin:-$bin_dir/bench}
    if [[ ! -x $broker_bin || ! -x $bench_bin ]]; then
        [[ $build -eq 1 && $broker_bin == "$bin_dir/broker" && $bench_bin == "$bin_dir/bench" ]] \
            || die "$broker_bin or $bench_bin not found (build them, or see --help)"
        command -v cargo >/dev/null || die "cargo is needed to build rumor (or pass --broker-bin and --bench-bin)"
        build_rumor
        [[ -x $broker_bin && -x $bench_bin ]] || die "$broker_bin or $bench_bin not found after the build"
    fi
}

# Prints the binary path $1 as a report names it: relative to the
# repository when inside it, else by its file name only (reports are
# committed, and a path outside the checkout names a machine).
report_path() {
    case $1 in
        "$root"/*) printf '%s\n' "${1#"$root"/}" ;;
        /*) printf '%s (given, outside the checkout)\n' "${1##*/}" ;;
        *) printf '%s\n' "$1" ;;
    esac
}

# ---------------------------------------------------------------- processes

# The processes started and still to stop, in the order started, and
# their names for messages.
tracked_pids=() tracked_names=()

# Records a process to stop at exit: $1 pid, $2 name.
track_pid() {
    tracked_pids+=("$1")
    tracked_names+=("$2")
}

# Stops one process we started: SIGTERM, up to 10 s, then SIGKILL; then
# it is no longer stopped at exit. $1 pid (nothing when empty), $2 name.
stop_pid() {
    local pid=$1 name=$2 i
    [[ -n $pid ]] || return 0
    if kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            note "$name (pid $pid) did not stop on SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    # Only once it is gone: an interrupt meanwhile still stops it at exit.
    for i in "${!tracked_pids[@]}"; do
        if [[ ${tracked_pids[i]} == "$pid" ]]; then
            unset 'tracked_pids[i]' 'tracked_names[i]'
        fi
    done
}

# The EXIT trap: stops every tracked process, the last started first,
# removes $work_dir and exits with the script's status.
cleanup() {
    local status=$? i indexes
    trap - EXIT INT TERM
    indexes=("${!tracked_pids[@]}")
    for ((i = ${#indexes[@]} - 1; i >= 0; i--)); do
        stop_pid "${tracked_pids[indexes[i]]}" "${tracked_names[indexes[i]]}"
    done
    [[ -z ${work_dir:-} ]] || rm -rf "$work_dir"
    exit "$status"
}

# Makes work_dir, a fresh directory $TMPDIR/$1.XXXXXX (so fsyncs hit
# $TMPDIR's file system), and sets the traps that clean up at exit. Call
# it from the script itself, not in $(...).
make_work_dir() {
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Prints $1 distinct free ports, one a line: all bound at once, so none
# comes twice.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# Polls `$@` every 0.1 s until it succeeds; fails once $pid has exited or
# after $deadline seconds.
wait_ready() {
    local pid=$1 deadline=$2
    shift 2
    local end=$((SECONDS + deadline))
    while ((SECONDS < end)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- rumor brokers

# Starts a broker on 127.0.0.1:$1 with the peer list $2, the data
# directory $3 (logging to $3.log), --durability $4 and the flags $5...;
# its pid, tracked, goes to spawned_pid.
spawn_broker() {
    local port=$1 peers=$2 data=$3 durability=$4
    shift 4
    "$broker_bin" --host 127.0.0.1 --port "$port" --peers "$peers" --data-dir "$data" \
        --durability "$durability" "$@" 2>"$data.log" &
    spawned_pid=$!
    track_pid "$spawned_pid" "broker on port $port"
}

# Waits until the broker of pid $1 answers GET /health on port $2.
broker_ready() {
    wait_ready "$1" 15 curl -sf -m 5 "http://127.0.0.1:$2/health"
}

# Starts $2 rumor brokers as the group $1, in $work_dir/$1, with
# --durability $3 and the flags $4...: with 1, a broker alone (an empty
# peer list); with more, brokers peered with each other (a peer list
# naming them all). On free ports; a port can be taken between the probe
# and the bind, so it tries three times. Sets started_pids and
# started_ports, in the order of the peer list.
start_brokers() {
    local label=$1 count=$2 durability=$3 attempt i ready dir=$work_dir/$1 data=
    shift 3
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        started_pids=()
        mapfile -t started_ports < <(free_ports "$count")
        if ((count == 1)); then
            : >"$dir/peers.csv" # no peers: the broker runs alone
        else
            printf '127.0.0.1,%s\n' "${started_ports[@]}" >"$dir/peers.csv"
        fi
        for ((i = 0; i < count; i++)); do
            data=$dir/data-$attempt-$i
            spawn_broker "${started_ports[i]}" "$dir/peers.csv" "$data" "$durability" "$@"
            started_pids+=("$spawned_pid")
        done
        ready=1
        for ((i = 0; i < count; i++)); do
            broker_ready "${started_pids[i]}" "${started_ports[i]}" || ready=0
        done
        ((ready)) && return 0
        for ((i = 0; i < count; i++)); do
            stop_pid "${started_pids[i]}" "broker $label on port ${started_ports[i]}"
        done
        note "broker(s) $label on port(s) ${started_ports[*]} did not answer GET /health (attempt $attempt)"
    done
    tail -n 20 "$data.log" >&2 || true
    die "the rumor broker(s) $label did not start; see a log above"
}

# ---------------------------------------------------------------- HTTP and wrk

# Prints a payload of $1 bytes ("xxx...").
payload_value() {
    printf "%${1}s" '' | tr ' ' x
}

# POSTs the JSON body $3 to /$2 of the broker on port $1, failing on an
# error status.
rumor_post() {
    curl -sf -m 30 -o /dev/null -H 'Content-Type: application/json' -d "$3" \
        "http://127.0.0.1:$1/$2" || die "POST /$2 $3 to port $1 failed"
}

# Prints the messages that topic $2 of the broker on port $1 holds.
rumor_count() {
    curl -sf -m 30 "http://127.0.0.1:$1/topics/$2" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["messages"])' \
        || die "cannot read the message count of topic $2 (port $1)"
}

# Makes publisher and topic $2 on the broker on port $1 and writes
# $work_dir/publish.lua, wrk's script that POSTs one message of $value to
# it per request; the URL to give wrk is
# http://127.0.0.1:$1/topics/$2/messages.
wrk_prepare() {
    local port=$1 topic=$2
    rumor_post "$port" publishers "{\"id\": \"$topic\"}"
    rumor_post "$port" topics "{\"name\": \"$topic\", \"publisher\": \"$topic\"}"
    cat >"$work_dir/publish.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"publisher": "$topic", "payload": "$value"}'
LUA
}

# Checks wrk's output $1 of a run against topic $3 of the broker on port
# $2: every answer a success (no non-2xx, no socket errors), and the topic
# holding at least as many messages as wrk counted answers (requests
# still in flight when wrk stops are published but not counted).
wrk_check() {
    local out=$1 port=$2 topic=$3 requests held
    wrk_ok "$out"
    requests=$(wrk_requests "$out")
    held=$(rumor_count "$port" "$topic")
    [[ -n $requests && $held -ge $requests ]] \
        || die "topic $topic holds $held messages after wrk counted ${requests:-no} answers"
}

# Dies unless every answer in wrk's output $1 was a success (no non-2xx,
# no socket errors).
wrk_ok() {
    if grep -qE 'Non-2xx|Socket errors' <<<"$1"; then
        echo "$1" >&2
        die "wrk saw failed requests"
    fi
}

# Prints the answers wrk counted, from its output $1.
wrk_requests() {
    sed -nE 's/^ *([0-9]+) requests in .*/\1/p' <<<"$1"
}

# Prints the requests per second of wrk's output $1.
wrk_rate() {
    sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$1"
}

# ---------------------------------------------------------------- the report

# Sets git_rev and git_head (of $root), cpu_model, and fs_type (the file
# system of $work_dir).
machine_facts() {
    git_rev=$(git -C "$root" describe --always --dirty --tags 2>/dev/null || echo unknown)
    git_head=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
    fs_type=$(df -PT "$work_dir" 2>/dev/null | awk 'NR == 2 { print $2 }')
}

# Prints the machine in one line: CPUs, CPU model, kernel.
machine_line() {
    echo "$(nproc) CPUs, ${cpu_model:-unknown CPU}, $(uname -srm)"
}

# Prints the load averages over 1, 5 and 15 minutes.
load_avg() {
    cut -d' ' -f1-3 /proc/loadavg
}

# Prints the machine's CPU time so far, in clock ticks, as "stolen all":
# the time the host ran something else while this guest wanted to run
# (/proc/stat's steal), and the time of every state together (user
# through steal; guest time is already within user and nice).
cpu_ticks() {
    awk '/^cpu / { all = 0; for (i = 2; i <= 9; i++) all += $i; print $9, all; found = 1; exit }
         END { exit !found }' /proc/stat || die "cannot read the CPU time from /proc/stat"
}

# Prints the % of the machine's CPU time the host stole between two
# cpu_ticks readings $1 and $2. In the cluster's batch rounds of the
# eighth look (BENCHMARKS.md) the only rounds with any time stolen (1.6%
# and 2.4% of the run) were 15-25% slower than the others of their run:
# a round with time stolen is suspect.
stolen_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (split(a, x, " ") != 2 || split(b, y, " ") != 2 || y[2] <= x[2]) exit 1
        printf "%.1f\n", 100 * (y[1] - x[1]) / (y[2] - x[2])
    }' || die "cannot tell the time stolen from the readings '$1' and '$2'"
}

# Runs the command $3..., appending what it prints to the array named $1,
# and the % of the machine's time the host stole meanwhile to the array
# named $2.
noting_steal() {
    local -n results=$1 stolen=$2
    local before after
    shift 2
    before=$(cpu_ticks)
    results+=("$("$@")")
    after=$(cpu_ticks)
    stolen+=("$(stolen_pct "$before" "$after")")
}
