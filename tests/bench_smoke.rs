//! Smoke tests of `bench publish`, `bench latency`, `bench fanout`, `bench
//! pingpong`, `bench sweep` and `bench queue` against real brokers: each run finishes,
//! prints one JSON report, and the counts add up; `--plot` draws its chart
//! and `publish --replica` waits for the replica. `bench latency --redis`
//! runs against a redis-server of the test's own (`.ci/run` installs it);
//! `bench failover` starts and stops brokers of its own.

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use client::bench::{
    FailoverReport, FanoutReport, LatencyReport, PingPongReport, PublishReport, QueueReport,
    SweepReport,
};
use client::delivery::Latency;
use client::wire::TopicInfo;
use support::{assert_success, eventually, free_port, run_bin, Broker, ChildGuard, Cluster, HOST};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");
const BROKER: &str = env!("CARGO_BIN_EXE_broker");
/// Time limit for a benchmark run of a second or less.
const LIMIT: Duration = Duration::from_secs(20);
/// Time limit for a `bench failover` run of five seconds: the brokers'
/// start, the load, and the subscriber's wait for the last messages.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// The first bytes of every PNG file.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[tokio::test]
async fn bench_publish_publishes_every_message_singly_and_in_batches() {
    let broker = Broker::start().await;
    // 210 in batches of 50: four full requests and one of 10.
    for (batch, messages, requests) in [("1", 200, 200), ("50", 210, 5)] {
        let count = messages.to_string();
        let args = ["--connections", "4", "--messages", &count, "--batch", batch];
        let report: PublishReport = run_json(&broker, "publish", &args);
        assert_eq!((report.messages, report.requests), (messages, requests));
        assert_eq!(report.batch.to_string(), batch);
        let topic = topic_info(&broker, &report.topic).await;
        assert_eq!(topic.messages, messages, "{topic:?}");
        measured(&report.latency_ms);
    }
}

#[tokio::test]
async fn bench_publish_fails_with_the_brokers_answer_when_a_publish_is_refused() {
    let broker = Broker::start_with(&["--max-payload-bytes", "10"]).await;
    let port = broker.port.to_string();
    let args = [
        "publish",
        "--host",
        HOST,
        "--port",
        &port,
        "--messages",
        "5",
    ];
    let output = run_bin(BENCH, &args, "", LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("413") && stderr.contains("payload_too_large"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bench_latency_receives_every_message_sent() {
    let broker = Broker::start().await;
    let args = ["--rate", "200", "--seconds", "1", "--connections", "2"];
    let report: LatencyReport = run_json(&broker, "latency", &args);
    assert_eq!((report.sent, report.received), (200, 200));
    assert_eq!(report.transport, "poll");
    measured(&report.latency_ms);
}

#[tokio::test]
async fn bench_latency_over_sse_receives_every_message_sent() {
    let broker = Broker::start().await;
    let args = ["--rate", "200", "--seconds", "1", "--transport", "sse"];
    let report: LatencyReport = run_json(&broker, "latency", &args);
    assert_eq!((report.sent, report.received), (200, 200));
    assert_eq!(report.transport, "sse");
    measured(&report.latency_ms);
}

#[tokio::test]
async fn bench_latency_against_redis_receives_every_message_sent() {
    let redis = RedisServer::start().await;
    let server = format!("{HOST}:{}", redis.port);
    let args = [
        "latency",
        "--redis",
        &server,
        "--rate",
        "200",
        "--seconds",
        "1",
    ];
    let report: LatencyReport = json_report(&args);
    assert_eq!((report.sent, report.received), (200, 200));
    assert_eq!(report.transport, "redis-xread");
    measured(&report.latency_ms);
}

#[tokio::test]
async fn bench_publish_waits_until_the_replica_holds_every_message() {
    let cluster = Cluster::start(2, &[]).await;
    let replica = format!("{HOST}:{}", cluster.broker(1).port);
    let args = ["--messages", "200", "--replica", &replica];
    let report: PublishReport = run_json(cluster.broker(0), "publish", &args);
    assert_eq!(report.replicas.len(), 1, "{report:?}");
    assert_eq!(report.replicas[0].replica, replica);
    assert!(report.replicas[0].caught_up_ms >= 0.0, "{report:?}");
    let topic = topic_info(cluster.broker(1), &report.topic).await;
    assert_eq!(topic.messages, 200, "{topic:?}");
}

#[tokio::test]
async fn bench_fanout_reaches_every_waiting_subscriber() {
    let broker = Broker::start().await;
    let pid = broker.pid().to_string();
    let args = [
        "--subscribers",
        "20",
        "--rounds",
        "1",
        "--broker-pid",
        &pid,
        "--idle-seconds",
        "1",
    ];
    let (report, png): (FanoutReport, _) = run_plotted(&broker, "fanout", &args, "fanout.png");
    assert_eq!((report.subscribers, report.errors), (20, 0), "{report:?}");
    assert_eq!(report.rounds.len(), 1);
    assert_eq!(report.rounds[0].received, 20);
    let latency = measured(&report.rounds[0].latency_ms);
    assert_eq!(report.reach_all_ms, Some(latency.max));
    assert!(report.rss_idle_mb.is_some_and(|mb| mb > 0.0), "{report:?}");
    assert!(report.rss_mb.is_some_and(|mb| mb > 0.0), "{report:?}");
    assert!(
        report.idle_cpu_percent.is_some_and(|cpu| cpu >= 0.0),
        "{report:?}"
    );
    let topic = topic_info(&broker, &report.topic).await;
    assert_png(&png);
    assert_eq!(topic.subscribers, 20, "{topic:?}");
}

#[tokio::test]
async fn bench_pingpong_completes_every_round_trip() {
    let broker = Broker::start().await;
    let args = ["--round-trips", "20"];
    let (report, png): (PingPongReport, _) = run_plotted(&broker, "pingpong", &args, "rt.png");
    assert_eq!(report.round_trips, 20, "{report:?}");
    measured(&report.latency_ms);
    assert_png(&png);
}

#[tokio::test]
async fn bench_pingpong_answers_on_another_broker() {
    let cluster = Cluster::start(2, &[]).await;
    let pong_port = cluster.broker(1).port.to_string();
    let args = [
        "--round-trips",
        "20",
        "--pong-host",
        HOST,
        "--pong-port",
        &pong_port,
    ];
    let report: PingPongReport = run_json(cluster.broker(0), "pingpong", &args);
    assert_eq!(report.round_trips, 20, "{report:?}");
    measured(&report.latency_ms);
}

#[tokio::test]
async fn bench_sweep_publishes_at_every_step() {
    let broker = Broker::start().await;
    let args = ["--clients", "1,4", "--seconds-per-step", "1"];
    let (report, svg): (SweepReport, _) = run_plotted(&broker, "sweep", &args, "sweep.svg");
    let clients: Vec<u64> = report.steps.iter().map(|step| step.clients).collect();
    assert_eq!(clients, [1, 4]);
    for step in &report.steps {
        // Answers after the step's window are published but not counted.
        assert!(
            step.messages > 0 && step.messages <= step.requests,
            "{step:?}"
        );
        assert_eq!((step.errors, step.seconds), (0, 1.0), "{step:?}");
        measured(&step.latency_ms);
        measured(&step.health_ms);
    }
    let topic = topic_info(&broker, &report.topic).await;
    let published: u64 = report.steps.iter().map(|step| step.requests).sum();
    assert_eq!(topic.messages, published, "{topic:?}");
    let text = String::from_utf8(svg).expect("an SVG chart");
    assert!(text.starts_with("<svg"), "{text}");
    assert!(text.contains("clients") && text.contains("p99"), "{text}");
}

#[tokio::test]
async fn bench_publish_and_latency_draw_their_latency_charts() {
    let broker = Broker::start().await;
    let args = ["--messages", "100"];
    let (report, png): (PublishReport, _) = run_plotted(&broker, "publish", &args, "p.png");
    assert_eq!(report.requests, 100);
    assert_png(&png);
    let args = ["--rate", "100", "--seconds", "1"];
    let (report, svg): (LatencyReport, _) = run_plotted(&broker, "latency", &args, "l.svg");
    assert_eq!(report.received, 100);
    let text = String::from_utf8(svg).expect("an SVG chart");
    assert!(text.starts_with("<svg"), "{text}");
    assert!(text.contains("publish → delivery"), "{text}");
}

#[test]
fn bench_refuses_a_plot_file_of_unknown_format_before_running() {
    // Port 1: nothing listens there, so only the check before the run answers.
    for command in ["publish", "latency", "fanout", "pingpong", "sweep"] {
        let at_nobody = [command, "--host", HOST, "--port", "1"];
        let args = [&at_nobody[..], &["--plot", "chart.jpg"]].concat();
        let output = run_bin(BENCH, &args, "", LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(".svg or .png"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let failover = ["failover", "--broker-bin", BROKER, "--plot", "chart.jpg"];
    let output = run_bin(BENCH, &failover, "", LIMIT);
    assert_eq!(output.status.code(), Some(2));
    let nowhere = ["failover", "--broker-bin", "/nonexistent/broker"];
    let output = run_bin(BENCH, &nowhere, "", LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--broker-bin"), "{stderr}");
}

#[tokio::test]
async fn bench_queue_drains_a_shared_subscription_with_one_worker_and_with_many() {
    let broker = Broker::start().await;
    let args = ["--messages", "300", "--workers", "4", "--work-ms", "0"];
    let report: QueueReport = run_json(&broker, "queue", &args);
    assert_eq!((report.messages, report.workers), (300, 4));
    assert_eq!((report.one.workers, report.many.workers), (1, 4));
    for run in [&report.one, &report.many] {
        assert!(run.messages_per_sec > 0.0, "{report:?}");
        assert_eq!(run.redelivered, 0, "{report:?}");
        // Every message acknowledged: nothing left for the queue's subscriber.
        let subscriber = format!("{}-queue", run.topic);
        let query = support::at_once(Some(&run.topic), None);
        let left = broker.client().pull(&subscriber, &query).await.unwrap();
        assert!(left.messages.is_empty(), "{left:?}");
    }
    assert!(report.speedup > 0.0);
}

#[test]
fn bench_failover_loses_nothing_in_gossip_mode() {
    failover_smoke("gossip");
}

#[test]
fn bench_failover_loses_nothing_in_leader_mode() {
    failover_smoke("leader");
}

/// Runs `bench failover` in `mode` for five seconds at a small rate; the
/// user sees exit 0, a row per second with acknowledgements, the four
/// faults, nothing lost, a chart, and no broker left running.
fn failover_smoke(mode: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plot = dir.path().join("failover.svg");
    let args = [
        "failover",
        "--json",
        "--mode",
        mode,
        "--seconds",
        "5",
        "--rate",
        "50",
        "--broker-bin",
        BROKER,
        "--plot",
        plot.to_str().expect("a UTF-8 path"),
    ];
    let output = run_bin(BENCH, &args, "", FAILOVER_LIMIT);
    assert_success(&output);
    let report: FailoverReport = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!((report.mode.as_str(), report.offered), (mode, 250));
    assert_eq!(report.acknowledged, 250, "{report:?}");
    let events: Vec<&str> = report.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "kill leader",
            "restart old leader",
            "kill follower",
            "restart follower"
        ]
    );
    assert!(report.per_second.len() >= 5, "{report:?}");
    assert!(
        report.per_second[..5].iter().any(|s| s.acknowledged > 0),
        "{report:?}"
    );
    let [subscriber] = &report.check.subscribers[..] else {
        panic!("one subscriber: {report:?}");
    };
    assert_eq!((subscriber.lost, subscriber.changed), (0, 0), "{report:?}");
    let svg = std::fs::read_to_string(&plot).expect("the chart");
    assert!(svg.contains("kill leader"), "{svg}");
    for broker in &report.brokers {
        let stopped = std::net::TcpStream::connect(broker.as_str()).is_err();
        assert!(stopped, "broker {broker} still answers");
    }
}

/// Runs `bench <command> --json` against `broker` with `args`; asserts exit
/// 0 and returns the one JSON report.
#[track_caller]
fn run_json<R: serde::de::DeserializeOwned>(broker: &Broker, command: &str, args: &[&str]) -> R {
    let port = broker.port.to_string();
    let at_broker = [command, "--host", HOST, "--port", &port];
    json_report(&[&at_broker[..], args].concat())
}

/// Runs `bench <args> --json`; asserts exit 0 and returns the one JSON
/// report.
#[track_caller]
fn json_report<R: serde::de::DeserializeOwned>(args: &[&str]) -> R {
    let output = run_bin(BENCH, &[args, &["--json"]].concat(), "", LIMIT);
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

/// The latency percentiles of a run that measured some: a positive median
/// within the max.
#[track_caller]
fn measured(latency: &Option<Latency<f64>>) -> &Latency<f64> {
    let latency = latency.as_ref().expect("latency samples");
    assert!(
        latency.p50 > 0.0 && latency.p50 <= latency.max,
        "{latency:?}"
    );
    latency
}

/// `GET /topics/{name}` of `broker`.
async fn topic_info(broker: &Broker, name: &str) -> TopicInfo {
    broker.client().topic(name).await.expect("the topic")
}

/// [`run_json`] with `--plot <name>` in a fresh temporary directory;
/// returns the report and the chart file's bytes.
#[track_caller]
fn run_plotted<R: serde::de::DeserializeOwned>(
    broker: &Broker,
    command: &str,
    args: &[&str],
    name: &str,
) -> (R, Vec<u8>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    let plot = ["--plot", path.to_str().expect("a UTF-8 path")];
    let report = run_json(broker, command, &[args, &plot].concat());
    (report, std::fs::read(&path).expect("the chart"))
}

/// `bytes` are a PNG image.
#[track_caller]
fn assert_png(bytes: &[u8]) {
    assert!(bytes.starts_with(PNG_SIGNATURE), "{:?}", bytes.get(..8));
}

/// A redis-server of the test's own: on a free loopback port, its files in
/// a temporary directory, no snapshots; killed by pid when dropped.
struct RedisServer {
    port: u16,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits (up to [`LIMIT`]) until it accepts connections.
    async fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", HOST, "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; .ci/run installs it)");
        let server = RedisServer {
            port,
            _process: ChildGuard(child),
            _dir: dir,
        };
        eventually(LIMIT, "redis-server accepts connections", || async {
            TcpStream::connect((HOST, port)).is_ok()
        })
        .await;
        server
    }
}
