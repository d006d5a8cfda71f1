//! Smoke tests of `bench publish` and `bench latency` against a real broker:
//! each run finishes, prints one JSON report, and the counts add up.

mod support;

use std::time::Duration;

use client::bench::{LatencyReport, PublishReport};
use support::{assert_success, run_bin, Broker, HOST};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");
/// Time limit for a benchmark run of a second or less.
const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn bench_publish_publishes_every_message_singly_and_in_batches() {
    let broker = Broker::start().await;
    for (batch, requests) in [("1", 200), ("50", 4)] {
        let args = ["--connections", "4", "--messages", "200", "--batch", batch];
        let report: PublishReport = run_json(&broker, "publish", &args);
        assert_eq!((report.messages, report.requests), (200, requests));
        assert_eq!(report.batch.to_string(), batch);
        let topic = broker
            .client()
            .topic(&report.topic)
            .await
            .expect("the topic");
        assert_eq!(topic.messages, 200, "{topic:?}");
        let latency = report.latency_ms.expect("latency samples");
        assert!(
            latency.p50 > 0.0 && latency.p50 <= latency.max,
            "{latency:?}"
        );
    }
}

#[tokio::test]
async fn bench_latency_receives_every_message_sent() {
    let broker = Broker::start().await;
    let report: LatencyReport = run_json(&broker, "latency", &["--rate", "200", "--seconds", "1"]);
    assert_eq!((report.sent, report.received), (200, 200));
    let latency = report.latency_ms.expect("latency samples");
    assert!(
        latency.p50 > 0.0 && latency.p50 <= latency.max,
        "{latency:?}"
    );
}

/// Runs `bench <command> --json` against `broker` with `args`; asserts exit
/// 0 and returns the one JSON report.
#[track_caller]
fn run_json<R: serde::de::DeserializeOwned>(broker: &Broker, command: &str, args: &[&str]) -> R {
    let port = broker.port.to_string();
    let at_broker = [command, "--host", HOST, "--port", &port, "--json"];
    let output = run_bin(BENCH, &[&at_broker[..], args].concat(), "", LIMIT);
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}
