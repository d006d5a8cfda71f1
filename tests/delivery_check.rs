//! End-to-end test of the delivery checker: `publisher --log` and
//! `subscriber --log` against a real broker, then `bench check` on the logs
//! as written and on copies with a line removed or repeated.

mod support;

use std::path::Path;
use std::time::Duration;

use client::delivery::CheckReport;
use support::{assert_success, run_bin, Broker, HOST};

const PUBLISHER: &str = env!("CARGO_BIN_EXE_publisher");
const SUBSCRIBER: &str = env!("CARGO_BIN_EXE_subscriber");
const BENCH: &str = env!("CARGO_BIN_EXE_bench");
/// Time limit for a program that should finish promptly.
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn bench_check_passes_a_clean_run_and_finds_lost_and_duplicated_messages() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sent = path(dir.path(), "sent.log");
    let recv = path(dir.path(), "recv.log");
    let port = broker.port.to_string();
    let at_broker = ["--host", HOST, "--port", &port, "--topic", "bench"];

    let publisher = [&at_broker[..], &["--id", "P1", "--create"]].concat();
    let publisher = [&publisher[..], &["--count", "50", "--log", &sent]].concat();
    assert_success(&run_bin(PUBLISHER, &publisher, "", LIMIT));
    let subscriber = [&at_broker[..], &["--id", "S1", "--from", "earliest"]].concat();
    let subscriber = [&subscriber[..], &["--count", "50", "--log", &recv]].concat();
    assert_success(&run_bin(SUBSCRIBER, &subscriber, "", LIMIT));

    let table = run_bin(BENCH, &["check", &sent, &recv], "", LIMIT);
    assert_success(&table);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("sent: 50\n"), "{table}");
    let json = run_bin(BENCH, &["check", "--json", &sent, &recv], "", LIMIT);
    assert_success(&json);
    let report: CheckReport = serde_json::from_slice(&json.stdout).expect("one JSON report");
    assert_eq!(report.sent, 50);
    let [s1] = &report.subscribers[..] else {
        panic!("one subscriber: {report:?}")
    };
    assert_eq!(
        (s1.subscriber.as_str(), s1.received, s1.lost),
        ("S1", 50, 0)
    );
    assert_eq!((s1.duplicated, s1.out_of_order, s1.changed), (0, 0, 0));
    assert!(s1.latency_ms.is_some(), "{report:?}");

    let lines: Vec<String> = std::fs::read_to_string(&recv)
        .expect("read recv.log")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 50);

    let mut one_removed = lines.clone();
    one_removed.remove(10);
    let error = check_fails(dir.path(), "removed.log", &one_removed, &sent);
    assert!(error.contains("S1: 1 lost"), "{error:?}");

    let mut one_repeated = lines.clone();
    one_repeated.insert(10, lines[10].clone());
    let error = check_fails(dir.path(), "repeated.log", &one_repeated, &sent);
    assert!(error.contains("S1: 1 duplicated"), "{error:?}");
}

/// Writes `lines` to `dir/name`, runs `bench check` on `sent` and it, asserts
/// exit 1 with one error line and returns that line.
#[track_caller]
fn check_fails(dir: &Path, name: &str, lines: &[String], sent: &str) -> String {
    let recv = path(dir, name);
    std::fs::write(&recv, lines.join("\n") + "\n").expect("write a received log");
    let output = run_bin(BENCH, &["check", sent, &recv], "", LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    assert!(stderr.starts_with("bench: error: "), "{stderr:?}");
    stderr
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name)
        .to_str()
        .expect("UTF-8 temp path")
        .to_string()
}
