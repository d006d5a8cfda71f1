//! End-to-end tests of payload encryption (API.md §5.4): `publisher` and
//! `subscriber` with `--key-file` against a real broker, every wait bounded.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use client::delivery::{self, CheckReport, Record};
use client::envelope::{Key, PREFIX};
use client::wire::{Message, Pulled};
use support::{
    assert_one_line_failure, assert_success, at_once, free_port, lines, payloads, run_bin,
    topic_of, Broker, HOST,
};

const PUBLISHER: &str = env!("CARGO_BIN_EXE_publisher");
const SUBSCRIBER: &str = env!("CARGO_BIN_EXE_subscriber");
const BENCH: &str = env!("CARGO_BIN_EXE_bench");
/// Time limit for a program that should finish promptly.
const LIMIT: Duration = Duration::from_secs(30);

const KEY: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f10";
const OTHER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn subscriber_prints_what_the_publisher_sealed_and_the_broker_stores_only_envelopes() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Surrounding whitespace is allowed.
    let key = file(dir.path(), "key", &format!("  {KEY}\n"));
    let (sent, recv) = (path(dir.path(), "sent.log"), path(dir.path(), "recv.log"));
    let plaintexts = ["hello", "grüße, 世界 🎉", "  \"quoted\"  ", ""];

    let args = [
        "--id",
        "P1",
        "--topic",
        "vault",
        "--create",
        "--key-file",
        &key,
    ];
    let args = [&args[..], &["--log", &sent], &plaintexts[..]].concat();
    let output = run_against(PUBLISHER, broker.port, &args);
    assert_success(&output);
    let ids = lines(&output.stdout);
    assert_eq!(ids.len(), plaintexts.len(), "one id per message: {ids:?}");

    let stored = broker.stored_payloads("vault");
    assert_eq!(stored.len(), plaintexts.len(), "{stored:?}");
    for payload in &stored {
        assert!(payload.starts_with(PREFIX), "stored {payload:?}");
        for plaintext in plaintexts.iter().filter(|p| !p.is_empty()) {
            assert!(
                !payload.contains(plaintext),
                "{payload:?} shows {plaintext:?}"
            );
        }
    }
    // Sealed with the key and the topic name as associated data.
    let sealer = Key::read(Path::new(&key)).expect("the key");
    let opened: Vec<String> = stored
        .iter()
        .map(|payload| sealer.open("vault", payload).expect("opens for its topic"))
        .collect();
    assert_eq!(opened, plaintexts);

    let mut args = read_args("S1", "vault", plaintexts.len(), &key);
    args.extend(["--log".to_string(), recv.clone()]);
    let output = run_against(SUBSCRIBER, broker.port, &args);
    assert_success(&output);
    assert_eq!(lines(&output.stdout), plaintexts);

    let mut args = read_args("S2", "vault", plaintexts.len(), &key);
    args.extend(["--format", "json"].map(String::from));
    let output = run_against(SUBSCRIBER, broker.port, &args);
    assert_success(&output);
    let printed: Vec<Message> = lines(&output.stdout)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a message object per line"))
        .collect();
    let printed: Vec<(&str, &str)> = printed
        .iter()
        .map(|m| (m.id.as_str(), m.payload.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = ids.iter().map(String::as_str).zip(plaintexts).collect();
    assert_eq!(printed, expected);

    // Both logs digest the plaintext, so `bench check` matches them.
    let digests = plaintexts.map(|p| delivery::digest(p.as_bytes()));
    assert_eq!(logged_digests(&sent), digests);
    assert_eq!(logged_digests(&recv), digests);
    let check = run_bin(BENCH, &["check", "--json", &sent, &recv], "", LIMIT);
    assert_success(&check);
    let report: CheckReport = serde_json::from_slice(&check.stdout).expect("a JSON report");
    let [s1] = &report.subscribers[..] else {
        panic!("one subscriber: {report:?}")
    };
    assert_eq!((s1.received, s1.lost, s1.changed), (4, 0, 0), "{report:?}");
}

#[tokio::test]
async fn subscriber_with_another_key_fails_naming_the_message_and_leaves_it_unacknowledged() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = file(dir.path(), "key", KEY);
    let other = file(dir.path(), "other", OTHER_KEY);
    let args = [
        "--id",
        "P1",
        "--topic",
        "locked",
        "--create",
        "--key-file",
        &key,
        "one",
        "two",
    ];
    let published = run_against(PUBLISHER, broker.port, &args);
    assert_success(&published);
    let ids = lines(&published.stdout);

    let output = run_against(
        SUBSCRIBER,
        broker.port,
        &read_args("S1", "locked", 2, &other),
    );
    let error = assert_one_line_failure(&output, "subscriber");
    assert!(
        error.starts_with(&format!(
            "subscriber: error: cannot decrypt message {}: ",
            ids[0]
        )),
        "{error:?}"
    );
    assert!(
        output.stdout.is_empty(),
        "printed {:?}",
        lines(&output.stdout)
    );

    // Nothing was acknowledged: the same subscriber with the right key gets it all.
    assert_eq!(payloads(&pending(&broker, "S1", "locked").await).len(), 2);
    let output = run_against(SUBSCRIBER, broker.port, &read_args("S1", "locked", 2, &key));
    assert_success(&output);
    assert_eq!(lines(&output.stdout), ["one", "two"]);
}

#[tokio::test]
async fn subscriber_refuses_a_changed_envelope_and_a_plain_payload() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = file(dir.path(), "key", KEY);
    let key = Key::read(Path::new(&key_path)).expect("the key");
    let client = broker.client();
    let cases = [
        (
            "changed",
            changed(&key.seal("changed", "secret").expect("seal")),
        ),
        ("plain", "hello".to_string()),
        ("moved", key.seal("elsewhere", "secret").expect("seal")),
    ];
    for (topic, bad) in cases {
        topic_of(&client, "P1", topic).await;
        // A good message first: the batch holding the bad one is left whole.
        let good = key.seal(topic, "fine").expect("seal");
        client.publish(topic, "P1", &good).await.expect("publish");
        let id = client.publish(topic, "P1", &bad).await.expect("publish").id;

        let output = run_against(
            SUBSCRIBER,
            broker.port,
            &read_args("S1", topic, 2, &key_path),
        );
        let error = assert_one_line_failure(&output, "subscriber");
        let expected = format!("subscriber: error: cannot decrypt message {id}: ");
        assert!(error.starts_with(&expected), "{topic}: {error:?}");
        assert!(
            output.stdout.is_empty(),
            "{topic}: printed {:?}",
            lines(&output.stdout)
        );
        let left = pending(&broker, "S1", topic).await;
        assert_eq!(payloads(&left), [good.as_str(), bad.as_str()], "{topic}");
    }
}

#[test]
fn a_bad_key_file_fails_both_programs_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().to_string();
    let files = [
        path(dir.path(), "missing"),
        file(dir.path(), "empty", ""),
        file(dir.path(), "short", &KEY[..63]),
        file(dir.path(), "long", &format!("{KEY}0")),
        file(dir.path(), "not-hex", &KEY.replace('a', "x")),
        file(dir.path(), "two-keys", &format!("{KEY}\n{OTHER_KEY}\n")),
    ];
    for (program, id) in [(PUBLISHER, "P1"), (SUBSCRIBER, "S1")] {
        let name = Path::new(program).file_name().unwrap().to_str().unwrap();
        let message: &[&str] = if program == PUBLISHER { &["m"] } else { &[] };
        for key in &files {
            // No broker listens on the port: the key is read before any call.
            let args = ["--host", HOST, "--port", &port, "--id", id, "--topic", "t"];
            let args = [&args[..], &["--key-file", key], message].concat();
            let output = run_bin(program, &args, "", LIMIT);
            let error = assert_one_line_failure(&output, name);
            assert!(
                error.contains(key.as_str()) && error.contains("key file"),
                "{error:?}"
            );
            assert!(
                error.matches("os error").count() <= 1,
                "cause twice: {error:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// helpers

/// Arguments that make `subscriber` print `count` messages of `topic` from
/// the earliest, as `id`, with the key in `key`.
fn read_args(id: &str, topic: &str, count: usize, key: &str) -> Vec<String> {
    [
        "--id",
        id,
        "--topic",
        topic,
        "--from",
        "earliest",
        "--key-file",
        key,
        "--count",
    ]
    .map(String::from)
    .into_iter()
    .chain([count.to_string()])
    .collect()
}

/// `envelope` with one byte of its nonce changed, still valid base64.
fn changed(envelope: &str) -> String {
    let mut bytes = STANDARD
        .decode(envelope.strip_prefix(PREFIX).expect("an envelope"))
        .expect("base64");
    bytes[0] ^= 0x80;
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// Runs `program` to completion against the broker on `port`.
fn run_against<S: AsRef<str>>(program: &str, port: u16, args: &[S]) -> Output {
    let port = port.to_string();
    let mut all = vec!["--host", HOST, "--port", &port];
    all.extend(args.iter().map(AsRef::as_ref));
    run_bin(program, &all, "", LIMIT)
}

/// What `subscriber` would be given now on `topic`, without acknowledging.
async fn pending(broker: &Broker, subscriber: &str, topic: &str) -> Pulled {
    let query = at_once(Some(topic), Some(100));
    broker
        .client()
        .pull(subscriber, &query)
        .await
        .expect("pull")
}

/// The digest of each record in the delivery log at `path`, in order.
fn logged_digests(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read a delivery log");
    text.lines()
        .map(|line| match serde_json::from_str(line).expect("a record") {
            Record::Sent(sent) => sent.digest,
            Record::Received(received) => received.digest,
        })
        .collect()
}

/// Writes `contents` to `dir/name`; returns its path.
fn file(dir: &Path, name: &str, contents: &str) -> String {
    let path = path(dir, name);
    std::fs::write(&path, contents).expect("write a file");
    path
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name)
        .to_str()
        .expect("UTF-8 temp path")
        .to_string()
}
