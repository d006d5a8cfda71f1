//! `rumor`, the admin CLI (API.md §7), end to end against a live
//! two-broker cluster: tables for people, `--json` for scripts, changes
//! that reach the whole cluster, and one-line errors.

mod support;

use std::time::Duration;

use client::wire::{ClusterInfo, Message, StartFrom, SubscriberInfo, TopicInfo};
use serde_json::json;
use support::*;

const RUMOR: &str = env!("CARGO_BIN_EXE_rumor");
const LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(15);

/// Runs `rumor` against `broker` with `args`; returns its output.
fn rumor(broker: &Broker, args: &[&str]) -> std::process::Output {
    let port = broker.url().rsplit(':').next().unwrap().to_string();
    let mut all = vec!["--host", "127.0.0.1", "--port", &port];
    all.extend_from_slice(args);
    run_bin(RUMOR, &all, "", LIMIT)
}

/// Its standard output, once it succeeded.
fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumor_shows_and_changes_a_live_cluster() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.broker(0), cluster.broker(1));
    let (leader, term) = cluster.agreed_leader(WAIT).await;

    // status: a table, and JSON.
    let text = stdout_of(&rumor(a, &["status"]));
    assert!(text.contains(&format!("leader: {leader}")), "{text}");
    assert!(text.contains(&format!("term: {term}")), "{text}");
    for id in cluster.ids() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&id) && l.contains("yes")),
            "{text}"
        );
    }
    let info: ClusterInfo =
        serde_json::from_str(&stdout_of(&rumor(a, &["--json", "status"]))).unwrap();
    assert_eq!(info.members.len(), 2);
    assert_eq!(info.leader.as_deref(), Some(leader.as_str()));

    // topics and subscribers, with what the brokers hold.
    let client = cluster.client(0);
    client.register_publisher("p").await.unwrap();
    a.http_post(
        "/topics",
        json!({"name": "news", "publisher": "p", "limits": {"max_messages": 100}}),
    )
    .await
    .assert_status(201);
    subscribed(&client, "s", "news", StartFrom::Earliest).await;
    client
        .publish_batch("news", "p", vec!["one".into(), "two".into()])
        .await
        .unwrap();
    let text = stdout_of(&rumor(a, &["topics"]));
    let row = text
        .lines()
        .find(|l| l.starts_with("news"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("100 messages"), "{row}");
    assert!(text.starts_with("TOPIC"), "{text}");
    let topic: TopicInfo =
        serde_json::from_str(&stdout_of(&rumor(a, &["topics", "news", "--json"]))).unwrap();
    assert_eq!((topic.messages, topic.subscribers), (2, 1));
    let subscribers: Vec<SubscriberInfo> =
        serde_json::from_str(&stdout_of(&rumor(a, &["subscribers", "--json"]))).unwrap();
    let s = subscribers.iter().find(|s| s.id == "s").unwrap();
    assert_eq!(
        (
            s.subscriptions[0].topic.as_str(),
            s.subscriptions[0].pending
        ),
        ("news", 2)
    );
    let text = stdout_of(&rumor(a, &["subscribers"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("s ") && l.contains("news")),
        "{text}"
    );

    // tail: what the topic holds, then what comes, taking it from nobody.
    let lines = stdout_of(&rumor(
        b,
        &[
            "tail", "news", "--from", "earliest", "--count", "2", "--json",
        ],
    ));
    let tailed: Vec<Message> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let payloads: Vec<&str> = tailed.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["one", "two"]);
    let port = b.url().rsplit(':').next().unwrap().to_string();
    let mut follower = ChildGuard(spawn_piped(
        RUMOR,
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "tail",
            "news",
            "--count",
            "1",
        ],
    ));
    let out = read_all(follower.0.stdout.take().unwrap());
    // The tail starts at the latest message: publish until it has seen one
    // (a publish before it connected is not its to see).
    let deadline = std::time::Instant::now() + WAIT;
    while follower.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail printed nothing"
        );
        client.publish("news", "p", "three").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let printed = String::from_utf8(out.join().unwrap()).unwrap();
    assert!(printed.trim_end().ends_with("p  three"), "{printed:?}");
    let still = client
        .pull("s", &at_once(Some("news"), None))
        .await
        .unwrap();
    assert!(
        still.messages.len() >= 3,
        "nothing was taken from s: {still:?}"
    );

    // mode and members: changed through one broker, seen by the other.
    assert_eq!(stdout_of(&rumor(a, &["mode", "leader"])), "mode: leader\n");
    eventually(WAIT, "b is in leader mode", || async {
        b.http_get("/cluster").await.json()["mode"] == json!("leader")
    })
    .await;
    stdout_of(&rumor(b, &["--json", "mode", "gossip"]));
    let spare = format!("127.0.0.1:{}", free_port());
    assert_eq!(
        stdout_of(&rumor(a, &["members", "add", &spare])),
        format!("added {spare}\n")
    );
    eventually(WAIT, "b lists the new member", || async {
        b.http_get("/cluster").await.text.contains(&spare)
    })
    .await;
    stdout_of(&rumor(b, &["members", "remove", &spare]));
    eventually(WAIT, "a no longer lists it", || async {
        !a.http_get("/cluster").await.text.contains(&spare)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumor_fails_in_one_line_and_makes_tokens() {
    let broker = Broker::start().await;
    let missing = rumor(&broker, &["topics", "nope"]);
    let line = assert_one_line_failure(&missing, "rumor");
    assert!(line.contains("topic_not_found"), "{line}");
    let nowhere = run_bin(RUMOR, &["status"], "", LIMIT);
    assert!(assert_one_line_failure(&nowhere, "rumor").contains("--host"));
    let unreachable = run_bin(
        RUMOR,
        &["--host", "127.0.0.1", "--port", "1", "status"],
        "",
        LIMIT,
    );
    assert!(assert_one_line_failure(&unreachable, "rumor").contains("cannot reach"));
    let bad_mode = rumor(&broker, &["mode", "chaos"]);
    assert_eq!(bad_mode.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad_mode.stderr).lines().count(), 1);
    let bad_member = rumor(&broker, &["members", "add", "no-port"]);
    assert!(assert_one_line_failure(&bad_member, "rumor").contains("HOST:PORT"));

    // A token and the line for --auth-file, which a broker then accepts.
    let text = stdout_of(&run_bin(RUMOR, &["token"], "", LIMIT));
    let lines: Vec<&str> = text.lines().collect();
    let token = lines[0].strip_prefix("token = ").unwrap();
    assert_eq!(token.len(), 64);
    assert!(lines[1].starts_with("token_sha256 = \""), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    let principal = format!(
        "[[principal]]\nname = \"ops\"\nadmin = true\n{}\n",
        lines[1]
    );
    std::fs::write(&auth, principal).unwrap();
    let secured = Broker::start_with(&["--auth-file", auth.to_str().unwrap()]).await;
    let refused = rumor(&secured, &["topics"]);
    assert!(assert_one_line_failure(&refused, "rumor").contains("unauthenticated"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let listed = rumor(
        &secured,
        &["--token-file", token_file.to_str().unwrap(), "topics"],
    );
    assert_eq!(
        stdout_of(&listed),
        "TOPIC  CREATED BY  MESSAGES  SUBSCRIBERS  LIMITS\n"
    );
}
