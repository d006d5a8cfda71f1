#!/usr/bin/env bash
# Builds the broker (release) and starts one broker per line of
# globalState.csv, each with --host H --port P, all logging to this terminal
# with a [host:port] prefix. Ctrl-C (or SIGTERM) stops them all.
# If one broker exits on its own (e.g. killed to try failover), the others
# keep running; the script ends once every broker has exited, non-zero if
# one of them failed.
#
# The brokers authenticate each other with data/cluster.key (API.md §5.1),
# made on the first run (64 random hex characters, mode 0600); copy it to
# every machine of a cluster that spans several.
#
# Usage: scripts/cluster.sh [BROKER_FLAGS...]
#   Extra flags go to every broker, e.g. scripts/cluster.sh --durability normal
#   RUMOR_PEERS=FILE uses another peer list instead of globalState.csv.
set -euo pipefail

peers_file=${RUMOR_PEERS:-}
if [[ -n $peers_file ]]; then
    peers_file=$(cd "$(dirname "$peers_file")" && pwd)/$(basename "$peers_file")
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
peers_file=${peers_file:-$PWD/globalState.csv}

if [[ ! -f $peers_file ]]; then
    echo "cluster.sh: peer list $peers_file not found" >&2
    exit 1
fi

# Parse host,port lines; blank lines and # comments are skipped.
hosts=()
ports=()
line_no=0
while IFS= read -r line || [[ -n $line ]]; do
    line_no=$((line_no + 1))
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}   # trim leading whitespace
    line=${line%"${line##*[![:space:]]}"}   # trim trailing whitespace
    [[ -z $line || $line == \#* ]] && continue
    if [[ ! $line =~ ^([^,[:space:]]+)[[:space:]]*,[[:space:]]*([0-9]+)$ ]]; then
        echo "cluster.sh: $peers_file: line $line_no: expected host,port, got '$line'" >&2
        exit 1
    fi
    hosts+=("${BASH_REMATCH[1]}")
    ports+=("${BASH_REMATCH[2]}")
done < "$peers_file"

if [[ ${#hosts[@]} -eq 0 ]]; then
    echo "cluster.sh: $peers_file lists no brokers" >&2
    exit 1
fi

cargo build --release --bin broker
broker_bin=${CARGO_TARGET_DIR:-target}/release/broker

key_file=$PWD/data/cluster.key
if [[ ! -f $key_file ]]; then
    mkdir -p data
    (umask 077 && head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$key_file")
    echo "cluster.sh: created $key_file (the brokers' shared key)" >&2
fi

pids=()
names=()

stop_all() {
    local pid i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them time to finish in-flight requests, then insist.
    for i in $(seq 1 150); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "cluster.sh: broker pid $pid did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # Collect exit statuses; a broker stopped by us should exit 0.
    local status=0 code
    for i in "${!pids[@]}"; do
        code=0
        wait "${pids[$i]}" 2>/dev/null || code=$?
        if [[ $code -ne 0 && $code -ne 127 ]]; then
            echo "cluster.sh: [${names[$i]}] exited with status $code" >&2
            status=1
        fi
    done
    return $status
}

on_signal() {
    trap '' INT TERM
    echo "cluster.sh: stopping ${#pids[@]} broker(s)" >&2
    if stop_all; then exit 0; else exit 1; fi
}
trap on_signal INT TERM

prefix() {
    # Ctrl-C reaches the whole process group; outlive the broker we read from.
    trap '' INT TERM
    local line
    while IFS= read -r line; do
        printf '[%s] %s\n' "$1" "$line"
    done
}

for i in "${!hosts[@]}"; do
    name="${hosts[$i]}:${ports[$i]}"
    "$broker_bin" --host "${hosts[$i]}" --port "${ports[$i]}" --peers "$peers_file" \
        --cluster-key-file "$key_file" "$@" \
        > >(prefix "$name") 2>&1 &
    pids+=($!)
    names+=("$name")
done
echo "cluster.sh: started ${names[*]} (Ctrl-C stops them)" >&2

# Watch the brokers; `wait` on a sleeping child keeps traps responsive. A
# broker that dies (say, killed to try failover) is reported and the others
# keep running; start it again by hand with the command printed.
status=0
while [[ ${#pids[@]} -gt 0 ]]; do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            code=0
            wait "${pids[$i]}" 2>/dev/null || code=$?
            [[ $code -eq 0 ]] || status=1
            host=${names[$i]%:*}
            port=${names[$i]##*:}
            echo "cluster.sh: [${names[$i]}] exited with status $code; the others keep running." >&2
            echo "cluster.sh: restart it with: $broker_bin --host $host --port $port --peers $peers_file --cluster-key-file $key_file" >&2
            unset 'pids[i]' 'names[i]'
        fi
    done
    sleep 1 &
    wait $! 2>/dev/null || true
done
echo "cluster.sh: every broker has exited" >&2
exit $status
