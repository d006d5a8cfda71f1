//! API.md §6.1 end to end: headers and client ids on single and batch
//! publishes (stored, replicated, delivered), their limits, and
//! deduplication by `(topic, publisher, msg_id)` within `--dedup-window`,
//! on one broker and across brokers in leader mode, also across a leader
//! change.

mod support;

use std::time::Duration;

use client::wire::{Headers, NewMessage, StartFrom};
use client::Client;
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn message(payload: &str, headers: &[(&str, &str)], msg_id: Option<&str>) -> NewMessage {
    NewMessage {
        payload: payload.to_string(),
        headers: (!headers.is_empty()).then(|| {
            headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        }),
        msg_id: msg_id.map(str::to_string),
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_msg_ids_are_stored_replicated_and_delivered() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.client(0), cluster.client(1));
    topic_of(&a, "p", "t").await;
    subscribed(&a, "s", "t", StartFrom::Earliest).await;
    let one = message("one", &[("kind", "greeting"), ("lang", "fr")], Some("m-1"));
    a.publish_message("t", "p", one).await.unwrap();
    let batch = vec![
        message("two", &[("kind", "x")], Some("m-2")),
        message("three", &[], None),
    ];
    a.publish_messages("t", "p", batch).await.unwrap();
    a.publish_batch("t", "p", vec!["four".to_string()])
        .await
        .unwrap();
    for (name, client) in [("the broker that took them", &a), ("its peer", &b)] {
        let pulled = eventually_ok(WAIT, "every message arrives", || async {
            let pulled = client
                .pull("s", &at_once(Some("t"), None))
                .await
                .map_err(|e| e.to_string())?;
            if pulled.messages.len() == 4 {
                Ok(pulled)
            } else {
                Err(format!("{} messages", pulled.messages.len()))
            }
        })
        .await;
        let seen: Vec<(&str, Headers, Option<&str>)> = pulled
            .messages
            .iter()
            .map(|m| (m.payload.as_str(), m.headers.clone(), m.msg_id.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "one",
                    headers(&[("kind", "greeting"), ("lang", "fr")]),
                    Some("m-1")
                ),
                ("two", headers(&[("kind", "x")]), Some("m-2")),
                ("three", Headers::new(), None),
                ("four", Headers::new(), None),
            ],
            "on {name}"
        );
    }
    // On the wire: `{}` and `null` when a message has none.
    let raw = cluster
        .broker(1)
        .http_get("/subscribers/s/messages?topic=t&wait_ms=0")
        .await
        .json();
    assert_eq!(raw["messages"][2]["headers"], json!({}));
    assert_eq!(raw["messages"][2]["msg_id"], json!(null));
    assert_eq!(raw["messages"][0]["headers"]["lang"], json!("fr"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_msg_ids_outside_the_rules_store_nothing() {
    let (broker, _client) = start_with_topic(&[], "p", "t").await;
    let long = "v".repeat(4097);
    let many: serde_json::Map<String, serde_json::Value> =
        (0..33).map(|i| (format!("h{i}"), json!("v"))).collect();
    for body in [
        json!({"publisher": "p", "payload": "x", "msg_id": "has space"}),
        json!({"publisher": "p", "payload": "x", "msg_id": ""}),
        json!({"publisher": "p", "payload": "x", "msg_id": "m".repeat(129)}),
        json!({"publisher": "p", "payload": "x", "headers": {"bad name": "v"}}),
        json!({"publisher": "p", "payload": "x", "headers": {"a": long}}),
        json!({"publisher": "p", "payload": "x", "headers": many}),
        json!({"publisher": "p", "payload": "x", "headers": {"a": 1}}),
        json!({"publisher": "p", "messages": [{"payload": "ok"}, {"payload": "x", "msg_id": "a/b"}]}),
        json!({"publisher": "p", "payloads": ["x"], "msg_id": "m"}),
        json!({"publisher": "p", "payload": "x", "messages": [{"payload": "y"}]}),
    ] {
        broker
            .http_post("/topics/t/messages", body.clone())
            .await
            .assert_code(400, "bad_request", &body.to_string());
    }
    assert!(broker.stored_payloads("t").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_msg_id_within_the_window_is_answered_as_a_duplicate() {
    let (broker, client) = start_with_topic(&["--dedup-window", "2s"], "p", "t").await;
    let first = broker
        .http_post(
            "/topics/t/messages",
            json!({"publisher": "p", "payload": "x", "msg_id": "m-1"}),
        )
        .await;
    first.assert_status(201);
    assert_eq!(first.json().get("duplicate"), None);
    let again = broker
        .http_post(
            "/topics/t/messages",
            json!({"publisher": "p", "payload": "changed", "msg_id": "m-1"}),
        )
        .await;
    again.assert_status(200);
    assert_eq!(again.json()["duplicate"], json!(true));
    assert_eq!(again.json()["id"], first.json()["id"]);
    // Another publisher's m-1 is its own message.
    client.register_publisher("q").await.unwrap();
    let other = client
        .publish_message("t", "q", message("y", &[], Some("m-1")))
        .await
        .unwrap();
    assert!(!other.duplicate);
    // A batch: 201 if it stored anything, per message flags; 200 if not.
    let mixed = broker
        .http_post(
            "/topics/t/messages",
            json!({"publisher": "p", "messages": [
                {"payload": "x", "msg_id": "m-1"}, {"payload": "z", "msg_id": "m-2"},
                {"payload": "z", "msg_id": "m-2"}]}),
        )
        .await;
    mixed.assert_status(201);
    let flags: Vec<bool> = mixed.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["duplicate"] == json!(true))
        .collect();
    assert_eq!(flags, [true, false, true]);
    broker
        .http_post(
            "/topics/t/messages",
            json!({"publisher": "p", "messages": [{"payload": "z", "msg_id": "m-2"}]}),
        )
        .await
        .assert_status(200);
    assert_eq!(broker.stored_payloads("t"), ["x", "y", "z"]);
    // Once the window has passed, m-1 is stored again.
    eventually(WAIT, "m-1 is stored again after the window", || async {
        broker
            .http_post(
                "/topics/t/messages",
                json!({"publisher": "p", "payload": "later", "msg_id": "m-1"}),
            )
            .await
            .status
            == 201
    })
    .await;
    assert_eq!(broker.stored_payloads("t"), ["x", "y", "z", "later"]);
}

/// A subscriber that acknowledges at once lets retention delete the first
/// copy within a second; a repeat within the window is still a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_a_duplicate_after_retention_deleted_the_first_copy() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    let first = client
        .publish_message("t", "p", message("x", &[], Some("m-1")))
        .await
        .unwrap();
    let pulled = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&pulled), ["x"]);
    client.ack("s", &pulled.cursor).await.unwrap();
    eventually(
        WAIT,
        "retention deletes the acknowledged message",
        || async { broker.stored_payloads("t").is_empty() },
    )
    .await;
    let again = client
        .publish_message("t", "p", message("x", &[], Some("m-1")))
        .await
        .unwrap();
    assert!(again.duplicate, "stored again: {again:?}");
    assert_eq!(again.id, first.id);
    let pulled = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&pulled), Vec::<&str>::new());
}

/// Publishes `payload` with `msg_id` through `client`, retrying while the
/// cluster has no leader; returns whether it was a duplicate.
async fn publish_once(client: &Client, payload: &str, msg_id: &str) -> bool {
    eventually_ok(WAIT, "a leader takes the publish", || async {
        client
            .publish_message("t", "p", message(payload, &[], Some(msg_id)))
            .await
            .map(|published| published.duplicate)
            .map_err(|e| e.to_string())
    })
    .await
}

/// Three brokers in leader mode, agreed on a leader, with publisher `p`
/// and topic `t`; returns them and the leader's id.
async fn leader_mode_with_topic() -> (Cluster, String) {
    let cluster = Cluster::start(3, &["--mode", "leader"]).await;
    let (leader, _) = cluster.agreed_leader(WAIT).await;
    let client = cluster.client(0);
    eventually_ok(WAIT, "the topic is created", || async {
        client
            .register_publisher("p")
            .await
            .map_err(|e| e.to_string())?;
        client
            .create_topic("t", "p")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    (cluster, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_mode_deduplicates_across_brokers_and_a_leader_change() {
    let (mut cluster, leader) = leader_mode_with_topic().await;
    assert!(!publish_once(&cluster.client(0), "x", "m-1").await);
    assert!(publish_once(&cluster.client(1), "x", "m-1").await);
    // The leader goes; its successor holds m-1 (a majority had it).
    let leader_index = (0..3).find(|&i| cluster.id(i) == leader).unwrap();
    cluster.kill(leader_index);
    let survivor = (0..3).find(|&i| i != leader_index).unwrap();
    assert!(publish_once(&cluster.client(survivor), "x", "m-1").await);
    assert!(!publish_once(&cluster.client(survivor), "y", "m-2").await);
    let stored = cluster.broker(survivor).stored_payloads("t");
    assert_eq!(stored, ["x", "y"]);
}

/// The orphan copy (API.md §6.1, "a failover never stores a message
/// twice"): the leader stores a publish no follower gets (both are paused,
/// so the leader still counts them alive, and then killed, so they never
/// read it) and dies unanswered; the client repeats it through the new leader; the
/// old leader comes back with its copy, which enters the order after the
/// repeat. Every broker keeps and delivers the message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_through_a_new_leader_outlives_the_old_leaders_orphan_copy() {
    let (mut cluster, leader) = leader_mode_with_topic().await;
    subscribed(&cluster.client(0), "s", "t", StartFrom::Earliest).await;
    assert!(!publish_once(&cluster.client(0), "before", "m-0").await);
    let old = (0..3).find(|&i| cluster.id(i) == leader).unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    cluster.same_events_everywhere(WAIT).await;
    for &i in &followers {
        cluster.pause(i);
    }
    let alone = cluster
        .client(old)
        .publish_message("t", "p", message("x", &[], Some("m-1")))
        .await;
    assert!(alone.is_err(), "a leader alone acknowledged: {alone:?}");
    assert_eq!(cluster.broker(old).stored_payloads("t"), ["before", "x"]);
    cluster.kill(old);
    for &i in &followers {
        cluster.kill(i);
        cluster.restart(i).await;
    }
    assert!(!publish_once(&cluster.client(followers[0]), "x", "m-1").await);
    assert!(!publish_once(&cluster.client(followers[0]), "after", "m-2").await);
    cluster.restart(old).await;
    cluster
        .agreed_leader_where(WAIT, "the old leader again", |id, _| id == leader)
        .await;
    cluster.same_events_everywhere(WAIT).await;
    for i in 0..3 {
        let client = cluster.client(i);
        let broker = cluster.broker(i);
        eventually_ok(WAIT, "one copy stored and delivered", || async {
            let pulled = client
                .pull("s", &at_once(Some("t"), None))
                .await
                .map_err(|e| e.to_string())?;
            let delivered = payloads(&pulled);
            let stored = broker.stored_payloads("t");
            let x_stored = stored.iter().filter(|p| *p == "x").count();
            if delivered == ["before", "x", "after"] && x_stored == 1 {
                Ok(())
            } else {
                Err(format!(
                    "broker {i}: delivered {delivered:?}, stored {stored:?}"
                ))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_fails_over_in_leader_mode_without_losing_or_duplicating() {
    const COUNT: usize = 20_000;
    let mut cluster = Cluster::start(3, &["--mode", "leader"]).await;
    let (leader, _) = cluster.agreed_leader(WAIT).await;
    let leader_index = (0..3).find(|&i| cluster.id(i) == leader).unwrap();
    let setup = cluster.client(leader_index);
    topic_of(&setup, "p", "t").await;
    subscribed(&setup, "s", "t", StartFrom::Earliest).await;
    let dir = tempfile::tempdir().unwrap();
    // The publisher talks to the leader first.
    let order: Vec<usize> = std::iter::once(leader_index)
        .chain((0..3).filter(|&i| i != leader_index))
        .collect();
    let peers = dir.path().join("peers.csv");
    let lines: String = order
        .iter()
        .map(|&i| format!("{HOST},{}\n", cluster.broker(i).port))
        .collect();
    std::fs::write(&peers, lines).unwrap();
    let (peers, sent, recv) = (
        peers.to_str().unwrap().to_string(),
        dir.path().join("sent.log").to_str().unwrap().to_string(),
        dir.path().join("recv.log").to_str().unwrap().to_string(),
    );
    let count = COUNT.to_string();
    let publisher = [
        "--peers", &peers, "--id", "p", "--topic", "t", "--create", "--count", &count, "--log",
        &sent,
    ];
    let mut publisher = ChildGuard(spawn_piped(env!("CARGO_BIN_EXE_publisher"), &publisher));
    let mut printed = lines_of(publisher.0.stdout.take().unwrap());
    let stderr = read_all(publisher.0.stderr.take().unwrap());
    // Mid-run, the leader it talks to dies.
    let mut seen = 0;
    while seen < COUNT / 10 {
        let line = tokio::time::timeout(WAIT, printed.recv()).await;
        assert!(matches!(line, Ok(Some(_))), "the publisher stopped early");
        seen += 1;
    }
    cluster.kill(leader_index);
    let status = publisher.wait(Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(status.success(), "publisher: {status}: {stderr}");

    // Nothing stored twice either, on either survivor (the subscription
    // keeps every message until it is acknowledged).
    for i in order[1..].iter().copied() {
        let broker = cluster.broker(i);
        eventually_ok(WAIT, "the survivors hold every message once", || async {
            let mut payloads = broker.stored_payloads("t");
            let stored = payloads.len();
            payloads.sort();
            payloads.dedup();
            if stored == COUNT && payloads.len() == COUNT {
                Ok(())
            } else {
                Err(format!("{stored} stored, {} distinct", payloads.len()))
            }
        })
        .await;
    }

    let survivor = order[1];
    let port = cluster.broker(survivor).port.to_string();
    let subscriber = [
        "--host", HOST, "--port", &port, "--id", "s", "--topic", "t", "--from", "earliest",
        "--count", &count, "--log", &recv,
    ];
    let output = run_bin(
        env!("CARGO_BIN_EXE_subscriber"),
        &subscriber,
        "",
        Duration::from_secs(120),
    );
    assert_success(&output);
    let check = run_bin(
        env!("CARGO_BIN_EXE_bench"),
        &["check", "--json", &sent, &recv],
        "",
        WAIT,
    );
    assert_success(&check);
    let report: client::delivery::CheckReport = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report.sent, COUNT as u64, "{report:?}");
    let [s] = &report.subscribers[..] else {
        panic!("{report:?}")
    };
    assert_eq!((s.received, s.lost, s.duplicated), (COUNT as u64, 0, 0));
}

/// What `s` would be given now on `t` through `client`.
async fn pending_payloads(client: &Client) -> Vec<String> {
    let pulled = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    pulled.messages.into_iter().map(|m| m.payload).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_acknowledged_one_by_one_in_any_order_on_every_broker() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.client(0), cluster.client(1));
    topic_of(&a, "p", "t").await;
    subscribed(&a, "s", "t", StartFrom::Earliest).await;
    let sent: Vec<String> = (1..=5).map(|n| format!("m{n}")).collect();
    let batch = a.publish_batch("t", "p", sent.clone()).await.unwrap();
    let ids: Vec<String> = batch.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(pending_payloads(&a).await, sent);

    // Out of order, one unknown id among them (passed over).
    let unknown = format!("{}/999999", cluster.id(0));
    a.ack_ids("s", &[ids[3].clone(), ids[1].clone(), unknown])
        .await
        .unwrap();
    assert_eq!(pending_payloads(&a).await, ["m1", "m3", "m5"]);
    eventually(
        WAIT,
        "the other broker knows the acknowledgements",
        || async { pending_payloads(&b).await == ["m1", "m3", "m5"] },
    )
    .await;
    // Through the other broker, and the v1 cursor form beside it.
    b.ack_ids("s", &[ids[4].clone()]).await.unwrap();
    let pulled = b.pull("s", &at_once(Some("t"), Some(1))).await.unwrap();
    assert_eq!(payloads(&pulled), ["m1"]);
    b.ack("s", &pulled.cursor).await.unwrap();
    assert_eq!(pending_payloads(&b).await, ["m3"]);
    b.ack_ids("s", &[ids[2].clone()]).await.unwrap();
    assert!(pending_payloads(&b).await.is_empty());
    eventually(WAIT, "nothing is pending on either broker", || async {
        pending_payloads(&a).await.is_empty()
    })
    .await;
    // Acknowledged by its only subscriber everywhere: retention deletes them.
    for i in 0..2 {
        let broker = cluster.broker(i);
        eventually(WAIT, "retention deletes what was acknowledged", || async {
            broker.stored_payloads("t").is_empty()
        })
        .await;
    }

    let broker = cluster.broker(0);
    for body in [
        json!({"ids": ["not an id"]}),
        json!({"ids": ["h:1/0"]}),
        json!({"cursor": "x", "ids": []}),
        json!({}),
    ] {
        broker
            .http_post("/subscribers/s/ack", body.clone())
            .await
            .assert_code(400, "bad_request", &body.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_settings_are_checked_and_kept() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    client.create_topic("dead", "p").await.unwrap();
    client.register_subscriber("s").await.unwrap();
    let subscribe =
        |body: serde_json::Value| broker.http_post("/subscribers/s/subscriptions", body);
    for body in [
        json!({"topic": "t", "ack_wait_ms": 999}),
        json!({"topic": "t", "ack_wait_ms": 3_600_001}),
        json!({"topic": "t", "backoff_ms": [10]}),
        json!({"topic": "t", "max_deliveries": 3, "dead_letter_topic": "dead"}),
        json!({"topic": "t", "ack_wait_ms": 1000, "max_deliveries": 3}),
        json!({"topic": "t", "ack_wait_ms": 1000, "dead_letter_topic": "dead"}),
        json!({"topic": "t", "ack_wait_ms": 1000, "backoff_ms": []}),
        json!({"topic": "t", "ack_wait_ms": 1000, "max_deliveries": 0, "dead_letter_topic": "dead"}),
        json!({"topic": "t", "ack_wait_ms": 1000, "max_deliveries": 2, "dead_letter_topic": "t"}),
    ] {
        subscribe(body.clone())
            .await
            .assert_code(400, "bad_request", &body.to_string());
    }
    let missing = json!({"topic": "t", "ack_wait_ms": 1000, "max_deliveries": 2, "dead_letter_topic": "none"});
    subscribe(missing)
        .await
        .assert_error(404, "topic_not_found");
    let shared = json!({"topic": "t", "ack_wait_ms": 5000, "backoff_ms": [100, 1000],
                        "max_deliveries": 3, "dead_letter_topic": "dead"});
    subscribe(shared.clone()).await.assert_status(201);
    subscribe(shared).await.assert_status(200);
    // Other settings for the same subscription: unsubscribe first.
    subscribe(json!({"topic": "t", "ack_wait_ms": 6000}))
        .await
        .assert_code(400, "bad_request", "other settings");
    subscribe(json!({"topic": "t"}))
        .await
        .assert_code(400, "bad_request", "v1 over shared");
}

/// Registers `s` and subscribes it to `t` with `settings` (shared ones).
async fn shared_subscriber(broker: &Broker, settings: serde_json::Value) {
    subscribed_shared(broker, "s", "t", settings).await;
}

fn pull_query(max: u32, wait_ms: u64) -> client::wire::PullQuery {
    client::wire::PullQuery {
        topic: Some("t".to_string()),
        max: Some(max),
        wait_ms: Some(wait_ms),
        auto_ack: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_leases_each_message_to_one_pull_until_its_lease_ends() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    shared_subscriber(&broker, json!({"ack_wait_ms": 1000})).await;
    let sent: Vec<String> = (1..=10).map(|n| format!("m{n}")).collect();
    client.publish_batch("t", "p", sent.clone()).await.unwrap();
    // v1 pulls would each get all ten; these split them.
    let first = client.pull("s", &pull_query(4, 0)).await.unwrap();
    let second = client.pull("s", &pull_query(100, 0)).await.unwrap();
    let third = client.pull("s", &pull_query(100, 0)).await.unwrap();
    assert_eq!(payloads(&first), ["m1", "m2", "m3", "m4"]);
    assert_eq!(payloads(&second), ["m5", "m6", "m7", "m8", "m9", "m10"]);
    assert!(third.messages.is_empty());
    assert!(first.messages.iter().all(|m| m.deliveries == 1));
    // The first pull's messages are acknowledged (by its cursor), the
    // second's are not: once their leases end (1 s) they come again, to a
    // pull that was waiting for them.
    client.ack("s", &first.cursor).await.unwrap();
    let again = client.pull("s", &pull_query(100, 5_000)).await.unwrap();
    assert_eq!(payloads(&again), ["m5", "m6", "m7", "m8", "m9", "m10"]);
    assert!(
        again.messages.iter().all(|m| m.deliveries == 2),
        "{again:?}"
    );
    let ids: Vec<String> = again.messages.iter().map(|m| m.id.clone()).collect();
    client.ack_ids("s", &ids).await.unwrap();
    let none = client.pull("s", &pull_query(100, 1_500)).await.unwrap();
    assert!(none.messages.is_empty(), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_by_id_on_a_shared_subscription_pass_over_messages_never_given_out() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    shared_subscriber(&broker, json!({"ack_wait_ms": 60000})).await;
    let first = client.publish("t", "p", "m1").await.unwrap();
    let second = client.publish("t", "p", "m2").await.unwrap();
    // Neither was leased yet: passed over (204), both still to come.
    client
        .ack_ids("s", &[first.id.clone(), second.id.clone()])
        .await
        .unwrap();
    let pulled = client.pull("s", &pull_query(1, 0)).await.unwrap();
    assert_eq!(payloads(&pulled), ["m1"]);
    // m1 is leased now: acknowledged; m2 is still passed over.
    client
        .ack_ids("s", &[first.id.clone(), second.id.clone()])
        .await
        .unwrap();
    let rest = client.pull("s", &pull_query(100, 0)).await.unwrap();
    assert_eq!(payloads(&rest), ["m2"]);
    assert_eq!(rest.messages[0].deliveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_gives_a_message_out_again_and_max_deliveries_moves_it_to_the_dead_letters() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    client.create_topic("dead", "p").await.unwrap();
    let settings = json!({"ack_wait_ms": 60_000, "max_deliveries": 2, "dead_letter_topic": "dead"});
    shared_subscriber(&broker, settings).await;
    client
        .publish_message("t", "p", message("work", &[("kind", "job")], Some("j-1")))
        .await
        .unwrap();
    let first = client.pull("s", &pull_query(10, 0)).await.unwrap();
    assert_eq!(payloads(&first), ["work"]);
    let id = vec![first.messages[0].id.clone()];
    // Leased for a minute: no other pull gets it, an extension keeps it.
    client.extend("s", &id).await.unwrap();
    assert!(client
        .pull("s", &pull_query(10, 0))
        .await
        .unwrap()
        .messages
        .is_empty());
    client.nack("s", &id, 0).await.unwrap();
    let second = client.pull("s", &pull_query(10, 0)).await.unwrap();
    assert_eq!(payloads(&second), ["work"]);
    assert_eq!(second.messages[0].deliveries, 2);
    client.nack("s", &id, 0).await.unwrap();
    // Given out twice already: the next pull moves it instead.
    let third = client.pull("s", &pull_query(10, 0)).await.unwrap();
    assert!(third.messages.is_empty(), "{third:?}");
    client.register_subscriber("d").await.unwrap();
    client
        .subscribe("d", "dead", StartFrom::Earliest)
        .await
        .unwrap();
    let dead = client
        .pull("d", &at_once(Some("dead"), None))
        .await
        .unwrap();
    assert_eq!(payloads(&dead), ["work"]);
    let headers = &dead.messages[0].headers;
    assert_eq!(headers["kind"], "job");
    assert_eq!(headers["rumor-dead-letter-id"], id[0]);
    assert_eq!(headers["rumor-dead-letter-topic"], "t");
    assert_eq!(headers["rumor-deliveries"], "2");
    // A nack of what is not leased is passed over.
    client.nack("s", &id, 0).await.unwrap();
    assert!(client
        .pull("s", &pull_query(10, 0))
        .await
        .unwrap()
        .messages
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_pulls_count_deliveries_until_acknowledged() {
    let (_broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    client.publish("t", "p", "x").await.unwrap();
    let first = client.pull("s", &pull_query(10, 0)).await.unwrap();
    let second = client.pull("s", &pull_query(10, 0)).await.unwrap();
    assert_eq!(
        (first.messages[0].deliveries, second.messages[0].deliveries),
        (1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_mode_leases_through_the_leader_from_any_broker() {
    let (cluster, _) = leader_mode_with_topic().await;
    let client = cluster.client(0);
    shared_subscriber(cluster.broker(0), json!({"ack_wait_ms": 60_000})).await;
    let sent: Vec<String> = (1..=6).map(|n| format!("m{n}")).collect();
    client.publish_batch("t", "p", sent).await.unwrap();
    // Pulls through every broker: each message given out once.
    let mut given = Vec::new();
    for i in [0, 1, 2, 0] {
        let pulled = eventually_ok(WAIT, "a pull is answered", || async {
            cluster
                .client(i)
                .pull("s", &pull_query(2, 0))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        given.extend(pulled.messages.into_iter().map(|m| m.payload));
    }
    given.sort();
    assert_eq!(given, ["m1", "m2", "m3", "m4", "m5", "m6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subscribers_split_a_topic_and_a_killed_ones_leases_go_to_the_others() {
    const COUNT: usize = 3_000;
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    // Payloads of about 200 bytes: a worker whose output nobody reads
    // blocks once its pipe (64 KiB) is full, holding a leased batch.
    let sent: Vec<String> = (0..COUNT)
        .map(|n| format!("{n:05}-{}", "x".repeat(200)))
        .collect();
    for chunk in sent.chunks(1_000) {
        client
            .publish_batch("t", "p", chunk.to_vec())
            .await
            .unwrap();
    }
    let port = broker.port.to_string();
    let args = [
        "--host",
        HOST,
        "--port",
        &port,
        "--id",
        "w",
        "--topic",
        "t",
        "--from",
        "earliest",
        "--ack-wait",
        "2s",
    ];
    let spawn = || ChildGuard(spawn_piped(env!("CARGO_BIN_EXE_subscriber"), &args));
    let (mut stuck, mut a, mut b) = (spawn(), spawn(), spawn());
    let mut a_lines = lines_of(a.0.stdout.take().unwrap());
    let mut b_lines = lines_of(b.0.stdout.take().unwrap());
    let mut printed: Vec<String> = Vec::new();
    let mut collect = |printed: &mut Vec<String>| {
        while let Ok(line) = a_lines.try_recv() {
            printed.push(line);
        }
        while let Ok(line) = b_lines.try_recv() {
            printed.push(line);
        }
    };
    // The others go on while the first is stuck; then it dies.
    eventually(
        Duration::from_secs(60),
        "the others print most messages",
        || {
            collect(&mut printed);
            let enough = printed.len() >= COUNT / 2;
            async move { enough }
        },
    )
    .await;
    stuck.0.kill().unwrap();
    stuck.0.wait().unwrap();
    let mut stuck_out = String::new();
    std::io::Read::read_to_string(&mut stuck.0.stdout.take().unwrap(), &mut stuck_out).unwrap();
    let stuck_printed: Vec<String> = stuck_out.lines().map(str::to_string).collect();
    assert!(
        !stuck_printed.is_empty(),
        "the first worker printed nothing"
    );
    // What it held comes to the others once its leases end (2 s).
    eventually(Duration::from_secs(60), "every message is printed", || {
        collect(&mut printed);
        let mut all: Vec<&String> = printed.iter().chain(&stuck_printed).collect();
        all.sort();
        all.dedup();
        let done = all.len() == COUNT;
        async move { done }
    })
    .await;
    let db = broker.open_db_read_only();
    eventually(WAIT, "every message is acknowledged exactly once", || {
        let (acks, distinct): (i64, i64) = db
            .query_row(
                "SELECT count(*), count(DISTINCT j.value ->> 'origin' || '/' || (j.value ->> 'seq'))
                 FROM events e, json_each(e.details -> '$.ack_messages.ids') j
                 WHERE e.kind = 'ack_messages'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(acks, distinct, "a message was acknowledged twice");
        async move { acks == COUNT as i64 }
    })
    .await;
    // Messages given out by two lease events (the log keeps them; the
    // leases table forgets what a position covers).
    let redelivered: i64 = db
        .query_row(
            "SELECT count(*) FROM (
                 SELECT j.value ->> 'origin', j.value ->> 'seq' FROM events e,
                        json_each(e.details -> '$.lease.ids') j
                 WHERE e.kind = 'lease' AND e.details ->> '$.lease.delivered' = 1
                 GROUP BY 1, 2 HAVING count(*) >= 2)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        redelivered > 0,
        "the stuck worker's leases were not given out again"
    );
    eprintln!(
        "printed: {} by the killed worker, {} by the others; {redelivered} given out twice",
        stuck_printed.len(),
        printed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_dead_letter_topic_does_not_stop_the_subscription() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    client.create_topic("dead", "p").await.unwrap();
    let settings = json!({"ack_wait_ms": 60_000, "max_deliveries": 1, "dead_letter_topic": "dead"});
    shared_subscriber(&broker, settings).await;
    client.publish("t", "p", "work").await.unwrap();
    let first = client.pull("s", &pull_query(10, 0)).await.unwrap();
    client
        .nack("s", &[first.messages[0].id.clone()], 0)
        .await
        .unwrap();
    client.delete_topic("dead", "p").await.unwrap();
    // Nowhere to move it: it is given out again rather than the pull failing.
    let again = client.pull("s", &pull_query(10, 0)).await.unwrap();
    assert_eq!(payloads(&again), ["work"]);
    assert_eq!(again.messages[0].deliveries, 2);
}
