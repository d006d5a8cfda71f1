//! End-to-end tests of the `publisher` and `subscriber` programs (API.md §1):
//! real processes against a real broker, every wait bounded.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ExitStatus, Output};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use client::wire::{Message, PullQuery, Pulled, StartFrom};
use support::{
    assert_one_line_failure, assert_success, eventually, free_port, lines, payloads, peer_list,
    read_all, run_bin, spawn_piped, subscribed, wait_bounded, Broker, HOST,
};

const PUBLISHER: &str = env!("CARGO_BIN_EXE_publisher");
const SUBSCRIBER: &str = env!("CARGO_BIN_EXE_subscriber");
/// Time limit for a program that should finish promptly.
const LIMIT: Duration = Duration::from_secs(30);
/// Time limit for a running program's next line of output.
const LINE_LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// publisher

#[tokio::test]
async fn publisher_prints_one_id_per_argument_and_stores_the_messages() {
    let broker = Broker::start().await;
    let args = [
        "--id",
        "P1",
        "--topic",
        "news",
        "--create",
        "one",
        "two words",
        "three",
    ];
    let output = run_against(PUBLISHER, broker.port, &args, "");
    assert_success(&output);
    let ids = lines(&output.stdout);
    assert_eq!(ids.len(), 3, "one id per message: {ids:?}");
    for id in &ids {
        let seq = id.strip_prefix(&format!("{}/", broker.id()));
        assert!(
            seq.is_some_and(|seq| seq.parse::<u64>().is_ok()),
            "{id:?} is not <origin>/<seq>"
        );
    }
    let stored = read_topic(&broker, "news").await;
    assert_eq!(payloads(&stored), ["one", "two words", "three"]);
    let stored_ids: Vec<String> = stored.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(stored_ids, ids);
}

#[tokio::test]
async fn publisher_publishes_each_line_of_stdin() {
    let broker = Broker::start().await;
    let stdin = "alpha\nbeta gamma\r\ndelta";
    let args = ["--id", "P1", "--topic", "lines", "--create"];
    let output = run_against(PUBLISHER, broker.port, &args, stdin);
    assert_success(&output);
    assert_eq!(lines(&output.stdout).len(), 3);
    let stored = read_topic(&broker, "lines").await;
    assert_eq!(payloads(&stored), ["alpha", "beta gamma", "delta"]);
}

#[tokio::test]
async fn publisher_publishes_a_line_before_stdin_ends() {
    let broker = Broker::start().await;
    let args = broker_args(broker.port, &["--id", "P1", "--topic", "live", "--create"]);
    let mut publisher = Running::spawn(PUBLISHER, &args);
    publisher.write_line("first");
    let id = publisher.next_line();
    assert!(id.starts_with(&broker.id()), "unexpected id line {id:?}");
    publisher.write_line("second");
    publisher.next_line();
    publisher.close_stdin();
    assert!(publisher.wait().success());
    let stored = read_topic(&broker, "live").await;
    assert_eq!(payloads(&stored), ["first", "second"]);
}

#[tokio::test]
async fn publisher_count_publishes_generated_messages_in_order() {
    let broker = Broker::start().await;
    let args = ["--id", "P1", "--topic", "gen", "--create", "--count", "250"];
    let output = run_against(PUBLISHER, broker.port, &args, "");
    assert_success(&output);
    assert_eq!(lines(&output.stdout).len(), 250);
    let expected: Vec<String> = (1..=250).map(|n| format!("message-{n}")).collect();
    assert_eq!(payloads(&read_topic(&broker, "gen").await), expected);
}

#[tokio::test]
async fn publisher_create_accepts_an_existing_topic() {
    let broker = Broker::start().await;
    let args = ["--id", "P1", "--topic", "again", "--create", "x"];
    assert_success(&run_against(PUBLISHER, broker.port, &args, ""));
    assert_success(&run_against(PUBLISHER, broker.port, &args, ""));
    assert_eq!(payloads(&read_topic(&broker, "again").await), ["x", "x"]);
}

#[tokio::test]
async fn publisher_without_create_on_a_missing_topic_fails_with_one_line() {
    let broker = Broker::start().await;
    let args = ["--id", "P1", "--topic", "missing", "hello"];
    let output = run_against(PUBLISHER, broker.port, &args, "");
    let error = assert_one_line_failure(&output, "publisher");
    assert!(error.contains("(topic_not_found)"), "{error:?}");
    assert!(output.stdout.is_empty(), "nothing was published");
}

#[tokio::test]
async fn publisher_reports_a_topic_name_that_is_no_path_segment_as_invalid() {
    // Each name reaches the broker as one path segment (`a%2Fb`), not as
    // another endpoint (`/topics/a/b/messages`, `/topics/a?b/messages`).
    let broker = Broker::start().await;
    for topic in ["a/b", "a b", "a?b"] {
        for create in [true, false] {
            let mut args = vec!["--id", "P1", "--topic", topic];
            args.extend(create.then_some("--create"));
            args.push("x");
            let output = run_against(PUBLISHER, broker.port, &args, "");
            let error = assert_one_line_failure(&output, "publisher");
            assert!(error.contains("(invalid_name)"), "{args:?}: {error:?}");
            assert!(output.stdout.is_empty(), "{args:?}: nothing was published");
        }
    }
}

// ---------------------------------------------------------------------------
// both programs: errors

#[test]
fn programs_report_an_unreachable_broker_in_one_line() {
    let port = free_port();
    let publisher = run_against(PUBLISHER, port, &["--id", "P1", "--topic", "t", "m"], "");
    let error = assert_one_line_failure(&publisher, "publisher");
    assert!(error.contains("cannot reach broker"), "{error:?}");
    // The subscriber keeps trying for a while before it gives up.
    let subscriber = run_against(SUBSCRIBER, port, &["--id", "S1", "--topic", "t"], "");
    let error = assert_one_line_failure(&subscriber, "subscriber");
    assert!(error.contains("cannot reach broker"), "{error:?}");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let port = free_port().to_string();
    let cases: [(&str, &[&str]); 6] = [
        (
            PUBLISHER,
            &["--host", HOST, "--port", &port, "--topic", "t"],
        ),
        (PUBLISHER, &["--host", HOST, "--id", "P1", "--topic", "t"]),
        (
            PUBLISHER,
            &[
                "--host", HOST, "--port", &port, "--id", "P", "--topic", "t", "--count", "2", "m",
            ],
        ),
        (
            SUBSCRIBER,
            &["--host", HOST, "--port", &port, "--topic", "t"],
        ),
        (SUBSCRIBER, &["--port", &port, "--id", "S1", "--topic", "t"]),
        (
            SUBSCRIBER,
            &[
                "--host", HOST, "--port", &port, "--id", "S1", "--topic", "t", "--format", "xml",
            ],
        ),
    ];
    for (program, args) in cases {
        let output = run_bin(program, args, "", LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
        assert!(stderr.contains("error"), "{args:?}: stderr {stderr:?}");
    }
}

// ---------------------------------------------------------------------------
// subscriber

#[tokio::test]
async fn subscriber_prints_count_messages_from_earliest_and_acknowledges_them() {
    let broker = Broker::start().await;
    publish(&broker, "feed", &["a", "b", "c", "d", "e"]).await;
    let args = [
        "--id", "S1", "--topic", "feed", "--from", "earliest", "--count", "3",
    ];
    let output = run_against(SUBSCRIBER, broker.port, &args, "");
    assert_success(&output);
    assert_eq!(lines(&output.stdout), ["a", "b", "c"]);
    // Exactly the printed messages were acknowledged ...
    assert_eq!(payloads(&pull(&broker, "S1", "feed").await), ["d", "e"]);
    // ... and the next run continues from there.
    let args = ["--id", "S1", "--topic", "feed", "--count", "2"];
    let output = run_against(SUBSCRIBER, broker.port, &args, "");
    assert_success(&output);
    assert_eq!(lines(&output.stdout), ["d", "e"]);
    let left = pull(&broker, "S1", "feed").await.messages;
    assert!(left.is_empty(), "all acknowledged, yet pulled {left:?}");
}

#[tokio::test]
async fn subscriber_json_prints_one_message_object_per_line() {
    let broker = Broker::start().await;
    publish(&broker, "js", &["hello \"world\"", "two"]).await;
    let args = [
        "--id", "S1", "--topic", "js", "--from", "earliest", "--count", "2", "--format", "json",
    ];
    let output = run_against(SUBSCRIBER, broker.port, &args, "");
    assert_success(&output);
    let objects: Vec<serde_json::Value> = lines(&output.stdout)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 2);
    let first = &objects[0];
    for field in ["id", "origin", "topic", "publisher", "payload"] {
        assert!(first[field].is_string(), "{field} in {first}");
    }
    for field in ["seq", "lamport", "published_at_ms"] {
        assert!(first[field].is_u64(), "{field} in {first}");
    }
    let message: Message = serde_json::from_value(first.clone()).expect("a message");
    assert_eq!(message.payload, "hello \"world\"");
    assert_eq!(
        (message.topic.as_str(), message.publisher.as_str()),
        ("js", "P0")
    );
    assert_eq!(message.origin, broker.id());
    assert_eq!(message.id, format!("{}/{}", message.origin, message.seq));
}

#[tokio::test]
async fn subscriber_from_latest_receives_messages_published_after_it_started() {
    let broker = Broker::start().await;
    publish(&broker, "later", &["before"]).await;
    let args = broker_args(
        broker.port,
        &["--id", "S1", "--topic", "later", "--count", "2"],
    );
    let mut subscriber = Running::spawn(SUBSCRIBER, &args);
    wait_subscribed(&broker, "later").await;
    let args = ["--id", "P0", "--topic", "later", "after-1", "after-2"];
    assert_success(&run_against(PUBLISHER, broker.port, &args, ""));
    assert_eq!(subscriber.next_line(), "after-1");
    assert_eq!(subscriber.next_line(), "after-2");
    assert!(subscriber.wait().success());
}

#[tokio::test]
async fn subscriber_continues_after_its_broker_restarts() {
    let mut broker = Broker::start().await;
    publish(&broker, "durable", &["one"]).await;
    let args = [
        "--id", "S1", "--topic", "durable", "--from", "earliest", "--count", "2",
    ];
    let mut subscriber = Running::spawn(SUBSCRIBER, &broker_args(broker.port, &args));
    assert_eq!(subscriber.next_line(), "one");
    broker.kill();
    broker.restart().await;
    publish(&broker, "durable", &["two"]).await;
    // "one" may come again if its ack was lost with the broker: not printed twice.
    assert_eq!(subscriber.next_line(), "two");
    assert!(subscriber.wait().success());
}

#[tokio::test]
async fn programs_fail_over_to_the_second_listed_broker() {
    let broker = Broker::start().await;
    let (_dir, peers) = peer_list(&[free_port(), broker.port]);
    let peers = peers.as_str();
    let args = [
        "--peers", peers, "--id", "P1", "--topic", "fo", "--create", "x", "y",
    ];
    assert_success(&run_bin(PUBLISHER, &args, "", LIMIT));
    let args = [
        "--peers", peers, "--id", "S1", "--topic", "fo", "--from", "earliest", "--count", "2",
    ];
    let output = run_bin(SUBSCRIBER, &args, "", LIMIT);
    assert_success(&output);
    assert_eq!(lines(&output.stdout), ["x", "y"]);
}

#[tokio::test]
async fn subscriber_prints_nothing_twice_after_failing_over_to_a_lagging_broker() {
    // B starts from a copy of A's database: it holds A's messages and the
    // subscription, but none of the acknowledgements made on A afterwards,
    // like a replica that lags behind.
    let mut a = Broker::start().await;
    publish(&a, "lag", &["m1", "m2", "m3"]).await;
    subscribed(&a.client(), "S1", "lag", StartFrom::Earliest).await;
    let mut b = Broker::start().await;
    a.terminate();
    b.terminate();
    copy_files(&a.data_dir(), &b.data_dir());
    a.restart().await;
    b.restart().await;

    let (_dir, peers) = peer_list(&[a.port, b.port]);
    let args = [
        "--peers", &peers, "--id", "S1", "--topic", "lag", "--count", "4",
    ];
    let mut subscriber = Running::spawn(SUBSCRIBER, &args.map(String::from));
    let first: Vec<String> = (0..3).map(|_| subscriber.next_line()).collect();
    assert_eq!(first, ["m1", "m2", "m3"]);
    // Once A has the acknowledgement, only B still has them to deliver.
    eventually(LINE_LIMIT, "the subscriber acknowledges on A", || async {
        pull(&a, "S1", "lag").await.messages.is_empty()
    })
    .await;
    a.kill();
    publish(&b, "lag", &["m4"]).await;
    assert_eq!(subscriber.next_line(), "m4");
    assert!(subscriber.wait().success());
    let left = pull(&b, "S1", "lag").await.messages;
    assert!(
        left.is_empty(),
        "all acknowledged on B, yet pulled {left:?}"
    );
}

// ---------------------------------------------------------------------------
// helpers

/// Replaces the files of directory `to` with those of directory `from`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::remove_dir_all(to).expect("remove data dir");
    std::fs::create_dir(to).expect("create data dir");
    for entry in std::fs::read_dir(from).expect("read data dir") {
        let path = entry.expect("data dir entry").path();
        if path.is_file() {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, to.join(name)).expect("copy data file");
        }
    }
}

/// `--host 127.0.0.1 --port <port>` followed by `args`.
fn broker_args(port: u16, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--host".to_string(),
        HOST.to_string(),
        "--port".to_string(),
        port.to_string(),
    ];
    all.extend(args.iter().map(|arg| arg.to_string()));
    all
}

/// Runs `program` to completion against the broker on `port`.
fn run_against(program: &str, port: u16, args: &[&str], stdin: &str) -> Output {
    let all = broker_args(port, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run_bin(program, &all, stdin, LIMIT)
}

/// Publishes `payloads` to `topic` as publisher `P0`, creating the topic if needed.
async fn publish(broker: &Broker, topic: &str, payloads: &[&str]) {
    let client = broker.client();
    client.register_publisher("P0").await.expect("register P0");
    if let Err(error) = client.create_topic(topic, "P0").await {
        assert_eq!(
            error.code(),
            Some("topic_exists"),
            "create {topic}: {error}"
        );
    }
    for payload in payloads {
        client.publish(topic, "P0", payload).await.expect("publish");
    }
}

/// Every message of `topic`, oldest first, read by a fresh subscriber.
async fn read_topic(broker: &Broker, topic: &str) -> Pulled {
    let reader = format!("reader-{topic}");
    subscribed(&broker.client(), &reader, topic, StartFrom::Earliest).await;
    pull(broker, &reader, topic).await
}

/// What `subscriber` would be given now on `topic` (up to 1000 messages), without acknowledging.
async fn pull(broker: &Broker, subscriber: &str, topic: &str) -> Pulled {
    let query = PullQuery {
        topic: Some(topic.to_string()),
        max: Some(1000),
        wait_ms: Some(500),
        auto_ack: Some(false),
    };
    broker
        .client()
        .pull(subscriber, &query)
        .await
        .expect("pull")
}

/// Waits until `topic` has a subscriber.
async fn wait_subscribed(broker: &Broker, topic: &str) {
    let client = broker.client();
    eventually(LINE_LIMIT, "the subscriber subscribes", || async {
        client
            .topic(topic)
            .await
            .is_ok_and(|info| info.subscribers > 0)
    })
    .await;
}

/// A program left running: its stdout arrives line by line, its stderr is
/// kept for failure messages, and it is killed if still running when dropped.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `program` with `args`, its stdout read line by line.
    fn spawn(program: &str, args: &[String]) -> Running {
        let mut child = spawn_piped(program, args);
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let stderr = read_all(child.stderr.take().expect("stderr"));
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Writes `line` and a newline to the program's stdin.
    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to the program");
        stdin.flush().expect("flush to the program");
    }

    /// Closes the program's stdin: it reads end of input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line of stdout; fails the test after `LINE_LIMIT`.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_LIMIT) {
            Ok(line) => line,
            Err(error) => {
                let stderr = self.stop();
                panic!("no line of output within {LINE_LIMIT:?} ({error}); stderr: {stderr}")
            }
        }
    }

    /// Waits (bounded) for the program to exit by itself.
    fn wait(&mut self) -> ExitStatus {
        let every = Duration::from_millis(10);
        if let Some(status) = wait_bounded(&mut self.child, LIMIT, every) {
            return status;
        }
        let stderr = self.stop();
        panic!("program still running after {LIMIT:?}; stderr: {stderr}");
    }

    /// Kills the program if it still runs; returns its stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().and_then(|reader| reader.join().ok());
        String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
