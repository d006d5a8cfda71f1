#!/usr/bin/env python3
"""v1 pull throughput of two broker binaries, side by side (BENCHMARKS.md).

usage: scripts/pulls-side-by-side.py OLD_BROKER NEW_BROKER [ROUNDS]
env:   N (messages, default 100000), MAX (per pull, default 1000)

Each round starts each broker alone on a free port with a fresh data
directory, publishes N messages of 100 bytes in batches of 1000, lets it
settle, then pulls them all as one v1 subscriber (max=MAX, wait_ms=0) and
acknowledges every pull's cursor: one keep-alive connection, the Python
client does no JSON parsing. Reports per round and the medians: msg/s,
broker CPU (user+system) per message, ms per pull and per ack.
"""
import http.client, json, os, socket, statistics, subprocess, sys, tempfile, time

TICK = os.sysconf("SC_CLK_TCK")
N = int(os.environ.get("N", "100000"))
MAX = int(os.environ.get("MAX", "1000"))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.read()


def run(binary):
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--data-dir", data, "--peers", "/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port)
                    request(conn, "GET", "/health")
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise SystemExit(f"{binary} did not start")
            request(conn, "POST", "/publishers", {"id": "p"})
            request(conn, "POST", "/topics", {"name": "t", "publisher": "p"})
            request(conn, "POST", "/subscribers", {"id": "s"})
            request(conn, "POST", "/subscribers/s/subscriptions", {"topic": "t", "from": "earliest"})
            for _ in range(N // 1000):
                request(conn, "POST", "/topics/t/messages", {"publisher": "p", "payloads": ["x" * 100] * 1000})
            time.sleep(1.5)
            got, pull_s, ack_s = 0, 0.0, 0.0
            cpu_before, start = cpu_seconds(broker.pid), time.perf_counter()
            while got < N:
                t0 = time.perf_counter()
                _, data = request(conn, "GET", f"/subscribers/s/messages?topic=t&max={MAX}&wait_ms=0")
                t1 = time.perf_counter()
                got += data.count(b'"seq":')
                cursor = data[data.rindex(b'"cursor":"') + 10:data.rindex(b'"')].decode()
                request(conn, "POST", "/subscribers/s/ack", {"cursor": cursor})
                pull_s, ack_s = pull_s + t1 - t0, ack_s + time.perf_counter() - t1
            wall = time.perf_counter() - start
            pulls = N / MAX
            return (N / wall, (cpu_seconds(broker.pid) - cpu_before) / N * 1e6,
                    pull_s / pulls * 1e3, ack_s / pulls * 1e3)
        finally:
            broker.terminate()
            broker.wait()


def main():
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    results = {"old": [], "new": []}
    for r in range(rounds):
        for name, binary in (("old", old), ("new", new)):
            results[name].append(run(binary))
            rate, cpu_us, pull_ms, ack_ms = results[name][-1]
            print(f"{name} round {r}: {rate:,.0f} msg/s, {cpu_us:.2f} CPU us/msg, "
                  f"{pull_ms:.2f} ms/pull, {ack_ms:.2f} ms/ack", flush=True)
    for i, what in enumerate(["msg/s", "CPU us/msg", "ms/pull", "ms/ack"]):
        old_median = statistics.median(r[i] for r in results["old"])
        new_median = statistics.median(r[i] for r in results["new"])
        print(f"median {what}: old {old_median:,.2f}, new {new_median:,.2f}, "
              f"new/old {new_median / old_median:.3f}")


if __name__ == "__main__":
    main()
