#!/usr/bin/env bash
# rumor vs NATS JetStream, side by side, in one run: publishes with
# acknowledgements at 50 concurrent publishers, 100-byte payloads, one
# rumor broker (alone) against one nats-server (Debian's, -js, file
# storage, a stream with one subject), both on this machine, on loopback.
#
#   1. JetStream at its default sync                   (loadgen; loadgen through nats.go)
#   2. rumor --durability normal                        (loadgen; wrk; bench publish)
#   3. JetStream at the strongest sync the server has   (loadgen)
#   4. JetStream on a synchronous store_dir (2.9.x only, see below)
#   5. rumor --durability fsync                         (loadgen; wrk; bench publish)
#
# 1 and 2 are the pair where neither waits for an fsync per message: rumor
# commits to SQLite in WAL mode with synchronous=NORMAL (fsync at
# checkpoints only), JetStream writes each message to its block file
# (write(2), the page cache) before the acknowledgement and fsyncs on a
# timer. 3 and 5 are the pair at each one's strongest: rumor fsyncs every
# commit (synchronous=FULL; concurrent publishes share a commit) before
# answering. JetStream's `sync_interval` setting, and `sync_interval:
# always` (fsync every write), came with nats-server 2.10.0; 2.9.x (Debian
# bookworm has 2.9.10) rejects the field and fsyncs streams every 2 minutes
# (hard-coded), so there 3 is the default once more, measured next to 5.
# For 2.9.x, 4 stands in for `always` from outside the server: its
# store_dir has the `S` attribute (chattr +S: every write to the files in
# it is synchronous, as with O_SYNC), so each message is on disk before
# its acknowledgement; skipped when the file system refuses the attribute
# or with --no-sync-dir.
#
# The load generator of the pairs is one program for both servers
# ("loadgen", Go, built here from Debian's golang-go and
# golang-github-nats-io-go-nats-dev, offline): 50 publishers, each on its
# own connection, each waiting for the acknowledgement of a message before
# it sends the next, for --seconds. Its timed loop is equally lean for both:
# it speaks the NATS protocol (PUB with a reply inbox, JetStream's PubAck
# back) and HTTP/1.1 (keep-alive POSTs) itself, a request prepared once per
# connection, about as cheap per message as wrk. For reference JetStream is
# also driven through the nats.go client (js.Publish, which costs the
# shared cores more per message), and rumor by wrk (C, -t2 -c50) and by
# `bench publish --connections 50 --batch 1`. Every run reports
# the CPU time, in the timed window, of the load generator, of the server
# (both from /proc/PID/stat, or the child's rusage for wrk and bench, which
# are the same counters) and of the rest of the machine (/proc/stat), so
# that a saturated load generator, or other work, shows.
#
# Each measurement is repeated --runs times, interleaved (JetStream, rumor,
# JetStream, rumor, ...) so that machine noise hits both alike. Counts are
# checked after every run (stream info / GET /topics/{name}), so errors
# cannot inflate a rate. The report (stdout) gives the versions and the
# settings, then per measurement the median and the min-max range, the CPU
# shares, and the ratios rumor/JetStream. No targets.
# Progress goes to stderr, so `scripts/bench-vs-nats.sh > out.txt` keeps
# only the report.
#
# Installs nats-server, golang-go, golang-github-nats-io-go-nats-dev and wrk
# (Debian packages) when missing. Starts its own nats-server(s) and rumor
# brokers on free 127.0.0.1 ports in a temporary directory (under $TMPDIR,
# so the fsyncs hit that file system) and stops them at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"

usage() {
    cat <<'EOF'
Usage: scripts/bench-vs-nats.sh [options]

  --runs R            repetitions of each measurement, interleaved (default 3; env RUNS)
  --quick             tiny run to check the script works: 1 run of 1 s each
  --seconds S         seconds of each closed-loop and wrk run (default 3)
  --no-sync-dir       skip JetStream on a chattr +S store_dir (the stand-in
                      for `sync_interval: always` on nats-server 2.9.x)
  --broker-bin PATH   rumor broker binary (default target/release/broker)
  --bench-bin PATH    rumor bench binary (default target/release/bench)
  --no-build          never run cargo; fail when a binary is missing
  -h, --help          this help

The default binaries are built (cargo build --release) only when missing.
Publishers: 50 for every measurement, each on its own connection, each
waiting for its acknowledgement before the next message (closed loop).
`bench publish` runs are sized to about --seconds at the rate the
closed-loop generator reached on the same broker in the same run.
EOF
}

# ---------------------------------------------------------------- arguments

runs=${RUNS:-3}
seconds=3
sync_dir=1
quick=0
build=1
broker_bin=
bench_bin=
readonly clients=50 payload_bytes=100

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) need_value "$@"; runs=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --seconds) need_value "$@"; seconds=$2; shift 2 ;;
        --no-sync-dir) sync_dir=0; shift ;;
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
fi

need_positive "runs=$runs" "seconds=$seconds"

# ---------------------------------------------------------------- tools

command -v python3 >/dev/null || die "python3 is needed (to measure CPU time and parse the reports)"
command -v curl >/dev/null || die "curl is needed (to poll the brokers' /health)"

readonly packages=(nats-server golang-go golang-github-nats-io-go-nats-dev wrk)
# Debian's Go libraries, for building the load generator in GOPATH mode.
readonly gopath=/usr/share/gocode

if ! command -v nats-server >/dev/null || ! command -v go >/dev/null || ! command -v wrk >/dev/null \
    || [[ ! -d $gopath/src/github.com/nats-io/nats.go ]]; then
    install_packages "${packages[@]}"
fi

cd "$root"
resolve_rumor_bins

# ---------------------------------------------------------------- processes

make_work_dir bench-vs-nats
# Every server started, by label: pid and port.
declare -A server_pid=() server_port=()

# Writes a nats-server configuration: $1 file, $2 port, $3 store_dir,
# $4 extra lines of the jetstream block (may be empty).
nats_conf() {
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
jetstream {
    store_dir: "$3"
$4
}
EOF
}

# Starts nats-server as server $1 with the jetstream lines $2; $3 = sync
# makes its store_dir synchronous (chattr +S) first. A free port can be
# taken between the probe and the bind: try a few.
start_nats() {
    local label=$1 extra=$2 attr=${3:-} attempt port pid dir=$work_dir/$1
    mkdir -p "$dir/store"
    if [[ $attr == sync ]]; then
        chattr +S "$dir/store" 2>/dev/null && lsattr -d "$dir/store" 2>/dev/null | grep -q '^[^ ]*S' \
            || return 1
    fi
    for attempt in 1 2 3; do
        port=$(free_ports 1)
        nats_conf "$dir/nats.conf" "$port" "$dir/store" "$extra"
        nats-server -c "$dir/nats.conf" -l "$dir/nats.log" &
        pid=$!
        track_pid "$pid" "nats-server $label"
        server_pid[$label]=$pid
        if wait_ready "$pid" 15 grep -q 'Server is ready' "$dir/nats.log"; then
            server_port[$label]=$port
            return 0
        fi
        stop_pid "$pid" "nats-server $label"
        unset "server_pid[$label]"
        note "nats-server $label on port $port did not get ready (attempt $attempt)"
        mv "$dir/nats.log" "$dir/nats.log.$attempt" 2>/dev/null || true
    done
    tail -n 20 "$dir/nats.log.3" >&2 2>/dev/null || true
    die "nats-server $label did not start; see its log above"
}

# Starts a rumor broker, alone, as server $1 with --durability $2.
start_broker() {
    start_brokers "$1" 1 "$2"
    server_pid[$1]=${started_pids[0]}
    server_port[$1]=${started_ports[0]}
}

# ---------------------------------------------------------------- load generator

# The closed-loop load generator, for both servers. Debian's Go libraries
# are GOPATH sources, so it is built in GOPATH mode, without the network.
build_loadgen() {
    mkdir -p "$work_dir/loadgen"
    cat >"$work_dir/loadgen/main.go" <<'GO'
// bench-vs-nats.sh's load generator: C publishers, each on its own
// connection, each waiting for the acknowledgement of a message before it
// sends the next, for S seconds. The timed loop of each mode is the same
// lean one: a request prepared once, written whole, its answer read and
// checked. -mode nats speaks the NATS protocol itself (PUB with a reply
// subject, the JetStream PubAck back as a MSG); -mode http speaks
// HTTP/1.1 with keep-alive (POST /topics/{name}/messages, the answer's
// status and Content-Length). -mode natsgo publishes through the nats.go
// client (js.Publish), for reference. The stream (file storage, one
// subject, the rest default) or topic is created afresh, with nats.go or
// net/http, and counted afterwards. Prints one JSON object: the messages
// acknowledged and those the server holds afterwards, the timed window,
// and the CPU time used in it by this process, the server and the whole
// machine, in cores.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	mode        = flag.String("mode", "", "nats, natsgo or http")
	addr        = flag.String("addr", "", "the server's HOST:PORT")
	connections = flag.Int("connections", 50, "publishers, one connection each")
	seconds     = flag.Float64("seconds", 3, "how long to publish")
	payloadLen  = flag.Int("payload-bytes", 100, "bytes of each payload")
	name        = flag.String("name", "BENCH", "stream (its subject: the name in lower case), or topic and publisher")
	serverPid   = flag.Int("server-pid", 0, "the server's pid, for its CPU time")
	clkTck      = flag.Float64("clk-tck", 100, "clock ticks per second in /proc (getconf CLK_TCK)")
)

// How long one answer may take before the run fails.
const answerTimeout = 10 * time.Second

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

// User plus system clock ticks of a process: fields 14 and 15 of
// /proc/PID/stat, counted from the field after the command name.
func procTicks(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		die("%v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	user, _ := strconv.ParseFloat(f[11], 64)
	system, _ := strconv.ParseFloat(f[12], 64)
	return user + system
}

// Busy clock ticks of all CPUs: the first line of /proc/stat, less idle
// and iowait (user nice system idle iowait irq softirq steal).
func machineTicks() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		die("%v", err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	busy := 0.0
	for i := 0; i < 8 && i < len(f); i++ {
		if i != 3 && i != 4 {
			n, _ := strconv.ParseFloat(f[i], 64)
			busy += n
		}
	}
	return busy
}

type ticks struct{ self, server, machine float64 }

func sample() ticks {
	return ticks{procTicks("self"), procTicks(strconv.Itoa(*serverPid)), machineTicks()}
}

// Sends one message and waits for its acknowledgement.
type publisher func() error

func main() {
	flag.Parse()
	if *addr == "" || *serverPid == 0 {
		die("-addr and -server-pid are needed")
	}
	payload := bytes.Repeat([]byte("x"), *payloadLen)
	var stored func() uint64
	pubs := make([]publisher, *connections)
	switch *mode {
	case "nats", "natsgo":
		stored = setupStream()
		for i := range pubs {
			if *mode == "nats" {
				pubs[i] = natsPublisher(i, payload)
			} else {
				pubs[i] = natsGoPublisher(payload)
			}
		}
	case "http":
		stored = setupTopic()
		for i := range pubs {
			pubs[i] = httpPublisher(payload)
		}
	default:
		die("-mode must be nats, natsgo or http")
	}

	var acked, failed atomic.Uint64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, pub := range pubs {
		wg.Add(1)
		go func(pub publisher) {
			defer wg.Done()
			<-start
			deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
			for time.Now().Before(deadline) {
				if err := pub(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				acked.Add(1)
			}
		}(pub)
	}
	before, t0 := sample(), time.Now()
	close(start)
	wg.Wait()
	window := time.Since(t0).Seconds()
	after := sample()
	if n := failed.Load(); n > 0 {
		die("%d publishers failed, the first with: %v", n, firstErr.Load())
	}
	cores := func(t float64) float64 { return t / *clkTck / window }
	out, _ := json.Marshal(map[string]any{
		"acked":       acked.Load(),
		"stored":      stored(),
		"seconds":     window,
		"rate":        float64(acked.Load()) / window,
		"gen_cpu":     cores(after.self - before.self),
		"server_cpu":  cores(after.server - before.server),
		"machine_cpu": cores(after.machine - before.machine),
	})
	fmt.Println(string(out))
}

func subject() string { return strings.ToLower(*name) }

// Creates the stream afresh; returns a function counting its messages.
func setupStream() func() uint64 {
	nc, err := nats.Connect("nats://" + *addr)
	if err != nil {
		die("connecting to %s: %v", *addr, err)
	}
	js, err := nc.JetStream()
	if err != nil {
		die("%v", err)
	}
	if err := js.DeleteStream(*name); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		die("deleting stream %s: %v", *name, err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{
		Name: *name, Subjects: []string{subject()}, Storage: nats.FileStorage,
	}); err != nil {
		die("creating stream %s: %v", *name, err)
	}
	return func() uint64 {
		info, err := js.StreamInfo(*name)
		if err != nil {
			die("stream info %s: %v", *name, err)
		}
		return info.State.Msgs
	}
}

// A publisher through nats.go: js.Publish waits for the PubAck.
func natsGoPublisher(payload []byte) publisher {
	nc, err := nats.Connect("nats://" + *addr)
	if err != nil {
		die("connecting to %s: %v", *addr, err)
	}
	js, err := nc.JetStream()
	if err != nil {
		die("%v", err)
	}
	subj := subject()
	return func() error {
		_, err := js.Publish(subj, payload)
		return err
	}
}

// A publisher speaking the NATS protocol: one subscription to its own
// inbox, then per message a PUB with that inbox as the reply subject, and
// JetStream's PubAck ({"stream":..,"seq":..}, or {"error":..}) read back
// as a MSG on it. Answers the server's PINGs.
func natsPublisher(i int, payload []byte) publisher {
	conn, err := net.Dial("tcp", *addr)
	if err != nil {
		die("connecting to %s: %v", *addr, err)
	}
	r := bufio.NewReaderSize(conn, 4096)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		die("no INFO from %s: %q %v", *addr, line, err)
	}
	inbox := fmt.Sprintf("_INBOX.loadgen%d.%d", os.Getpid(), i)
	hello := `CONNECT {"verbose":false,"pedantic":false,"name":"loadgen","lang":"go","protocol":1}` + "\r\n" +
		"SUB " + inbox + " 1\r\nPING\r\n"
	if _, err := io.WriteString(conn, hello); err != nil {
		die("%v", err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			die("connecting to %s: %v", *addr, err)
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
		if strings.HasPrefix(line, "-ERR") {
			die("connecting to %s: %s", *addr, strings.TrimSpace(line))
		}
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "PUB %s %s %d\r\n", subject(), inbox, len(payload))
	msg.Write(payload)
	msg.WriteString("\r\n")
	request := msg.Bytes()
	ack := make([]byte, 0, 256)
	return func() error {
		conn.SetDeadline(time.Now().Add(answerTimeout))
		if _, err := conn.Write(request); err != nil {
			return err
		}
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			switch {
			case bytes.HasPrefix(line, []byte("MSG ")):
				// MSG <subject> <sid> <bytes>: the PubAck follows, then \r\n.
				f := bytes.Fields(line)
				n, err := strconv.Atoi(string(f[len(f)-1]))
				if err != nil {
					return fmt.Errorf("bad MSG line %q", line)
				}
				ack = grow(ack, n+2)
				if _, err := io.ReadFull(r, ack); err != nil {
					return err
				}
				if !bytes.Contains(ack, []byte(`"seq":`)) || bytes.Contains(ack, []byte(`"error"`)) {
					return fmt.Errorf("not acknowledged: %s", bytes.TrimSpace(ack))
				}
				return nil
			case bytes.HasPrefix(line, []byte("PING")):
				if _, err := io.WriteString(conn, "PONG\r\n"); err != nil {
					return err
				}
			case bytes.HasPrefix(line, []byte("-ERR")):
				return fmt.Errorf("%s", bytes.TrimSpace(line))
			}
		}
	}
}

// Creates the topic afresh (and its publisher); returns a function
// counting its messages.
func setupTopic() func() uint64 {
	post := func(path string, body any) {
		b, _ := json.Marshal(body)
		resp, err := http.Post("http://"+*addr+path, "application/json", bytes.NewReader(b))
		if err != nil {
			die("POST %s: %v", path, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			die("POST %s %s: %d %s", path, b, resp.StatusCode, answer)
		}
	}
	post("/publishers", map[string]string{"id": *name})
	post("/topics", map[string]string{"name": *name, "publisher": *name})
	return func() uint64 {
		resp, err := http.Get("http://" + *addr + "/topics/" + *name)
		if err != nil {
			die("GET /topics/%s: %v", *name, err)
		}
		defer resp.Body.Close()
		var topic struct{ Messages uint64 }
		if err := json.NewDecoder(resp.Body).Decode(&topic); err != nil || resp.StatusCode != 200 {
			die("GET /topics/%s: status %d, %v", *name, resp.StatusCode, err)
		}
		return topic.Messages
	}
}

// A publisher speaking HTTP/1.1 on one keep-alive connection: the POST
// prepared once, the answer's status line checked and its Content-Length
// bytes of body read.
func httpPublisher(payload []byte) publisher {
	conn, err := net.Dial("tcp", *addr)
	if err != nil {
		die("connecting to %s: %v", *addr, err)
	}
	r := bufio.NewReaderSize(conn, 4096)
	body, _ := json.Marshal(map[string]string{"publisher": *name, "payload": string(payload)})
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST /topics/%s/messages HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", *name, *addr, len(body))
	req.Write(body)
	request := req.Bytes()
	answer := make([]byte, 0, 256)
	return func() error {
		conn.SetDeadline(time.Now().Add(answerTimeout))
		if _, err := conn.Write(request); err != nil {
			return err
		}
		status, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.1 2")) {
			return fmt.Errorf("answer %q", bytes.TrimSpace(status))
		}
		length := -1
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			if len(line) <= 2 {
				break
			}
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("content-length")) {
				length, err = strconv.Atoi(string(bytes.TrimSpace(v)))
				if err != nil {
					return fmt.Errorf("bad header %q", line)
				}
			}
		}
		if length < 0 {
			return errors.New("an answer without Content-Length")
		}
		answer = grow(answer, length)
		_, err = io.ReadFull(r, answer)
		return err
	}
}

// b resized to n bytes, reallocated only when too small.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
GO
    note "building the load generator (Go, GOPATH $gopath)"
    (cd "$work_dir/loadgen" && GO111MODULE=off GOPATH=$gopath GOFLAGS= GOCACHE=$work_dir/go-cache \
        go build -o loadgen main.go) >&2 || die "building the load generator failed"
    loadgen=$work_dir/loadgen/loadgen
}

# Runs a command ($3...) as a load generator of server pid $1, with its
# stdout into file $2, and prints its wall time and the CPU time, in cores,
# of the command (its rusage: the counters of /proc/PID/stat), of the
# server (/proc/PID/stat) and of the machine (/proc/stat) over that time.
measured() {
    python3 - "$clk_tck" "$@" <<'EOF'
import json, os, subprocess, sys, time

tck, server, out, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]

def proc_ticks():
    with open(f"/proc/{server}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def machine_ticks():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]

s0, m0, t0 = proc_ticks(), machine_ticks(), time.monotonic()
with open(out, "w") as f:
    child = subprocess.Popen(cmd, stdout=f)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
wall = time.monotonic() - t0
s1, m1 = proc_ticks(), machine_ticks()
if child.returncode != 0:
    sys.exit(child.returncode)
print(json.dumps({
    "seconds": wall,
    "gen_cpu": (usage.ru_utime + usage.ru_stime) / wall,
    "server_cpu": (s1 - s0) / tck / wall,
    "machine_cpu": (m1 - m0) / tck / wall,
}))
EOF
}

# ---------------------------------------------------------------- measurements

# Each measurement prints "rate,gen_cpu,server_cpu,machine_cpu": messages
# per second and cores.

# One closed-loop run of the load generator against server $1 ($2: nats,
# natsgo or http), $3 seconds, checking that the server holds exactly the messages
# acknowledged.
loadgen_run() {
    local label=$1 mode=$2 secs=$3 name=BENCH out
    [[ $mode == http ]] && name=lg-$RANDOM$RANDOM
    out=$("$loadgen" -mode "$mode" -addr "127.0.0.1:${server_port[$label]}" \
        -server-pid "${server_pid[$label]}" -clk-tck "$clk_tck" -connections "$clients" \
        -seconds "$secs" -payload-bytes "$payload_bytes" -name "$name" \
        2>"$work_dir/loadgen.err") \
        || { cat "$work_dir/loadgen.err" >&2; die "the load generator failed against $label"; }
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
if r["acked"] != r["stored"] or r["acked"] == 0:
    sys.exit(1)
print(",".join(str(r[k]) for k in ("rate", "gen_cpu", "server_cpu", "machine_cpu")))' <<<"$out" \
        || die "$label holds a different count than the load generator's acknowledgements: $out"
}

# One wrk run of single publishes to a fresh topic of broker $1, $2 seconds,
# 50 connections, 2 threads, after checking that every answer was a success
# and that the topic holds at least as many messages as wrk counted answers
# (requests still in flight when wrk stops are published but not counted).
wrk_run() {
    local label=$1 secs=$2 topic=wrk-$RANDOM$RANDOM cpu out
    wrk_prepare "${server_port[$label]}" "$topic"
    cpu=$(measured "${server_pid[$label]}" "$work_dir/wrk.out" \
        wrk --threads 2 --connections "$clients" --duration "${secs}s" \
        --script "$work_dir/publish.lua" "http://127.0.0.1:${server_port[$label]}/topics/$topic/messages") \
        || { cat "$work_dir/wrk.out" >&2; die "wrk failed"; }
    out=$(<"$work_dir/wrk.out")
    wrk_check "$out" "${server_port[$label]}" "$topic"
    python3 -c '
import json, sys
c = json.loads(sys.argv[2])
print(",".join(str(v) for v in (float(sys.argv[1]), c["gen_cpu"], c["server_cpu"], c["machine_cpu"])))' \
        "$(wrk_rate "$out")" "$cpu" || die "cannot read Requests/sec from wrk: $out"
}

# One `bench publish` run of $2 single publishes, 50 connections, against
# broker $1, checking the count it reports and the topic's.
bench_run() {
    local label=$1 m=$2 cpu out topic
    cpu=$(measured "${server_pid[$label]}" "$work_dir/bench.out" \
        "$bench_bin" publish --host 127.0.0.1 --port "${server_port[$label]}" --connections "$clients" \
        --messages "$m" --payload-bytes "$payload_bytes" --batch 1 --json) \
        || { cat "$work_dir/bench.out" >&2; die "bench publish failed"; }
    out=$(<"$work_dir/bench.out")
    topic=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["topic"])' "$out") \
        || die "cannot read the topic from bench publish: $out"
    python3 -c '
import json, sys
r, c, m, held = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if r["messages"] != m or held != m:
    sys.exit(1)
print(",".join(str(v) for v in (r["messages_per_sec"], c["gen_cpu"], c["server_cpu"], c["machine_cpu"])))' \
        "$out" "$cpu" "$m" "$(rumor_count "${server_port[$label]}" "$topic")" \
        || die "bench publish of $m messages: $out, but topic $topic holds $(rumor_count "${server_port[$label]}" "$topic")"
}

# Messages for a `bench publish` run of about $2 seconds at the rate of the
# measurement $1 ("rate,...").
messages_for() {
    python3 -c 'import sys; print(max(1000, round(float(sys.argv[1].split(",")[0]) * float(sys.argv[2]))))' "$1" "$2"
}

# ---------------------------------------------------------------- run

value=$(payload_value "$payload_bytes")
clk_tck=$(getconf CLK_TCK)
machine_facts
nats_version=$(nats-server --version 2>&1)
nats_pkg=$(dpkg-query -W -f '${Version}' nats-server 2>/dev/null || echo "not from a Debian package")
go_nats_pkg=$(dpkg-query -W -f '${Version}' golang-github-nats-io-go-nats-dev 2>/dev/null || echo unknown)

build_loadgen

# The strongest sync this nats-server has: `sync_interval: always` where it
# is known (2.10 and later); 2.9.x rejects the field ("unknown field"), and
# its streams fsync every 2 minutes whatever the configuration.
nats_conf "$work_dir/probe.conf" 4222 "$work_dir/probe" '    sync_interval: always'
if nats-server -t -c "$work_dir/probe.conf" >/dev/null 2>&1; then
    strong_extra='    sync_interval: always'
    strong_desc="sync_interval: always (an fsync after every write, before the acknowledgement)"
    sync_dir=0
else
    probe_error=$(nats-server -t -c "$work_dir/probe.conf" 2>&1 | grep -o 'unknown field "[^"]*"' || true)
    strong_extra=
    strong_desc="none stronger than the default: this version rejects 'sync_interval: always'
                  (${probe_error:-invalid configuration}); sync_interval and its 'always' came with
                  2.10.0, 2.9.x fsyncs streams every 2 min (hard-coded), each message written to the
                  block file (write(2), page cache) before its acknowledgement"
fi

load_start=$(load_avg)
start_nats nats-default ''
if [[ -n $strong_extra ]]; then
    start_nats nats-strong "$strong_extra"
    strong=nats-strong
else
    strong=nats-default
fi
if [[ $sync_dir -eq 1 ]] && ! start_nats nats-sync-dir '' sync; then
    note "chattr +S failed on $work_dir (no chattr, or the file system refuses it): no JetStream on a synchronous store_dir"
    sync_dir=0
fi
start_broker rumor-normal normal
start_broker rumor-fsync fsync
for label in "${!server_pid[@]}"; do
    note "$label on 127.0.0.1:${server_port[$label]} (pid ${server_pid[$label]})"
done

# One short untimed run against each server, so that the first timed run
# does not pay for file creation, first connections and the like.
note "warming up"
for label in "${!server_pid[@]}"; do
    case $label in
        nats-*) loadgen_run "$label" nats 1 >/dev/null ;;
        rumor-*) loadgen_run "$label" http 1 >/dev/null; wrk_run "$label" 1 >/dev/null ;;
    esac
done

nats_default=() nats_default_go=() rumor_normal=() rumor_normal_wrk=() rumor_normal_bench=()
nats_strong=() nats_sync_dir=() rumor_fsync=() rumor_fsync_wrk=() rumor_fsync_bench=()
for ((run = 1; run <= runs; run++)); do
    note "run $run/$runs: JetStream, default sync (loadgen, nats.go)"
    nats_default+=("$(loadgen_run nats-default nats "$seconds")")
    nats_default_go+=("$(loadgen_run nats-default natsgo "$seconds")")
    note "run $run/$runs: rumor --durability normal (loadgen, wrk, bench)"
    rumor_normal+=("$(loadgen_run rumor-normal http "$seconds")")
    rumor_normal_wrk+=("$(wrk_run rumor-normal "$seconds")")
    rumor_normal_bench+=("$(bench_run rumor-normal "$(messages_for "${rumor_normal[-1]}" "$seconds")")")
    note "run $run/$runs: JetStream, strongest sync ($strong)"
    nats_strong+=("$(loadgen_run "$strong" nats "$seconds")")
    if [[ $sync_dir -eq 1 ]]; then
        note "run $run/$runs: JetStream on a chattr +S store_dir"
        nats_sync_dir+=("$(loadgen_run nats-sync-dir nats "$seconds")")
    fi
    note "run $run/$runs: rumor --durability fsync (loadgen, wrk, bench)"
    rumor_fsync+=("$(loadgen_run rumor-fsync http "$seconds")")
    rumor_fsync_wrk+=("$(wrk_run rumor-fsync "$seconds")")
    rumor_fsync_bench+=("$(bench_run rumor-fsync "$(messages_for "${rumor_fsync[-1]}" "$seconds")")")
done

cat <<EOF
# rumor vs NATS JetStream: publishes with acknowledgements, $(date -u '+%Y-%m-%d %H:%M UTC')
rumor:       $git_rev ($git_head), $(report_path "$broker_bin")
nats-server: ${nats_version#nats-server: } (Debian package $nats_pkg)
loadgen:     built by $(go version | sed 's/^go version //'); nats.go $go_nats_pkg (Debian) for the streams and the nats.go rows
wrk:         $(wrk --version 2>&1 | head -n 1 | sed 's/ Copyright.*//')
machine:     $(machine_line)
data dirs:   file system ${fs_type:-unknown} (\$TMPDIR); all servers write there
load avg:    $load_start at the start, $(load_avg) at the end (1/5/15 min)

nats-server: 127.0.0.1 only, -c with jetstream { store_dir } and nothing else (no cluster);
             stream: file storage, one subject, replicas 1, other settings default;
             no Nats-Msg-Id headers (no duplicate checks)
  default sync:   as configured, no sync setting (each message written to the block file before
                  its acknowledgement; fsync on a timer, every 2 min in 2.9.x)
  strongest sync: $strong_desc
EOF
if [[ $sync_dir -eq 1 ]]; then
    cat <<EOF
  sync store_dir: the default configuration on a store_dir with chattr +S (every write to its files
                  is synchronous, as with O_SYNC: each message on disk before its acknowledgement);
                  a stand-in from outside the server for 'sync_interval: always'
EOF
fi
cat <<EOF
rumor broker: alone (empty --peers);
  --durability normal: SQLite WAL, synchronous=NORMAL (no fsync per commit; at checkpoints)
  --durability fsync:  SQLite WAL, synchronous=FULL (each commit fsynced before its answers;
                       concurrent publishes share a commit)
load: $clients publishers, each on its own connection, each waits for the acknowledgement of its
  message before sending the next; payload $payload_bytes bytes; ${seconds} s per run (bench publish:
  as many messages as the loadgen run before it acknowledged in ${seconds} s)
  loadgen: one Go program for both, speaking each protocol itself: PUB with a reply inbox and
    the PubAck read back / keep-alive HTTP/1.1 POST /topics/{name}/messages; "nats.go": the
    same loop through the nats.go client (js.Publish); wrk -t2 -c$clients with a Lua POST body;
    bench publish --connections $clients --batch 1
counts checked after every run: stream info msgs = acknowledgements, GET /topics/{name} messages
$runs run(s) of each, interleaved JetStream/rumor
EOF

rows=(
    "nats-default|JetStream, default sync, loadgen" "${nats_default[@]}"
    "nats-default-go|JetStream, default sync, nats.go" "${nats_default_go[@]}"
    "normal|rumor --durability normal, loadgen" "${rumor_normal[@]}"
    "normal-wrk|rumor --durability normal, wrk" "${rumor_normal_wrk[@]}"
    "normal-bench|rumor --durability normal, bench" "${rumor_normal_bench[@]}"
)
if [[ $strong == nats-default ]]; then
    rows+=("nats-strong|JetStream, strongest sync (= default), loadgen" "${nats_strong[@]}")
else
    rows+=("nats-strong|JetStream, sync_interval always, loadgen" "${nats_strong[@]}")
fi
if [[ $sync_dir -eq 1 ]]; then
    rows+=("nats-sync-dir|JetStream, chattr +S store_dir, loadgen" "${nats_sync_dir[@]}")
fi
rows+=(
    "fsync|rumor --durability fsync, loadgen" "${rumor_fsync[@]}"
    "fsync-wrk|rumor --durability fsync, wrk" "${rumor_fsync_wrk[@]}"
    "fsync-bench|rumor --durability fsync, bench" "${rumor_fsync_bench[@]}"
)

python3 - "$runs" "${rows[@]}" <<'EOF'
import os
import statistics
import sys

runs = int(sys.argv[1])
args = sys.argv[2:]
rows = {}
while args:
    key, label = args[0].split("|", 1)
    values = [[float(x) for x in v.split(",")] for v in args[1:1 + runs]]
    args = args[1 + runs:]
    rows[key] = (label, values)

width = max(len(label) for label, _ in rows.values())
med = statistics.median
print()
print(f"{'messages/s':<{width}}  {'median':>7}  {'min':>7}  {'max':>7}   runs")
for label, values in rows.values():
    rates = [v[0] for v in values]
    print(f"{label:<{width}}  {med(rates):>7.0f}  {min(rates):>7.0f}  {max(rates):>7.0f}"
          f"   {' '.join(f'{r:.0f}' for r in rates)}")

print()
print(f"CPU, medians over the runs: % of one core (of {100 * (os.cpu_count() or 1)}%) in each run's timed window, and")
print("CPU time per message; 'rest' is the rest of the machine (other work, the kernel's")
print("interrupts; not the idle servers, which take close to nothing)")
print(f"{'':<{width}}  {'loadgen':>7}  {'server':>7}  {'rest':>7}   {'server':>9}  {'loadgen':>9}")
for label, values in rows.values():
    gen = med(v[1] for v in values)
    server = med(v[2] for v in values)
    rest = med(v[3] - v[1] - v[2] for v in values)
    us_server = med(v[2] / v[0] * 1e6 for v in values)
    us_gen = med(v[1] / v[0] * 1e6 for v in values)
    print(f"{label:<{width}}  {gen * 100:>6.0f}%  {server * 100:>6.0f}%  {max(rest, 0) * 100:>6.0f}%"
          f"   {us_server:>6.1f} us  {us_gen:>6.1f} us")

print()
print("rumor/JetStream: ratio of the medians [min-max of the ratios of each interleaved pair]")
pairs = [
    ("normal vs default sync, loadgen", "normal", "nats-default"),
    ("normal vs default sync, wrk", "normal-wrk", "nats-default"),
    ("normal vs default sync, bench", "normal-bench", "nats-default"),
    ("normal loadgen vs default sync nats.go", "normal", "nats-default-go"),
    ("fsync vs strongest sync, loadgen", "fsync", "nats-strong"),
    ("fsync vs strongest sync, wrk", "fsync-wrk", "nats-strong"),
    ("fsync vs strongest sync, bench", "fsync-bench", "nats-strong"),
]
if "nats-sync-dir" in rows:
    pairs.append(("fsync vs chattr +S store_dir, loadgen", "fsync", "nats-sync-dir"))
name_width = max(len(p[0]) for p in pairs)
for name, ours, theirs in pairs:
    a = [v[0] for v in rows[ours][1]]
    b = [v[0] for v in rows[theirs][1]]
    each = [x / y for x, y in zip(a, b)]
    print(f"  {name:<{name_width}}  {med(a) / med(b):6.2f}  [{min(each):.2f}-{max(each):.2f}]")
EOF
