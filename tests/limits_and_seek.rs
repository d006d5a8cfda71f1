//! API.md §6.3 and §6.4 end to end: per-topic limits (set at creation and
//! changed later, shown, replicated, oldest messages trimmed first) and
//! seek (earliest, latest, a time, a message id), taken on one broker and
//! obeyed by another, also backwards after acknowledgements.

mod support;

use std::time::Duration;

use client::wire::{Message, StartFrom};
use client::Client;
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn put(broker: &Broker, path: &str, body: Value) -> Answer {
    let bytes = serde_json::to_vec(&body).expect("serialize body");
    broker
        .http_send("PUT", path, Some(("application/json", bytes)))
        .await
}

/// Waits until `client` holds exactly `expected` (by payload, in delivery
/// order) on topic `t` for subscriber `sid`, unacknowledged.
async fn pulls_exactly(client: &Client, sid: &str, expected: &[&str], what: &str) -> Vec<Message> {
    eventually_ok(WAIT, what, || async {
        let pulled = client
            .pull(sid, &at_once(Some("t"), Some(1000)))
            .await
            .map_err(|e| e.to_string())?;
        if payloads(&pulled) == expected {
            Ok(pulled.messages)
        } else {
            Err(format!("pulled {:?}", payloads(&pulled)))
        }
    })
    .await
}

/// Waits until `broker` stores exactly `expected` (in delivery order) on `t`.
async fn stores_exactly(broker: &Broker, expected: &[&str], what: &str) {
    eventually(WAIT, what, || async {
        broker.stored_payloads("t") == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_limits_are_shown_changed_replicated_and_trim_the_oldest_first() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.broker(0), cluster.broker(1));
    let client = cluster.client(0);
    client.register_publisher("p").await.unwrap();
    client.register_publisher("q").await.unwrap();
    for (body, code) in [
        (json!({"max_messages": 0}), "bad_request"),
        (json!({"max_bytes": -1}), "bad_request"),
        (json!({"max_age": "soon"}), "bad_request"),
        (json!({"max_age": "0s"}), "bad_request"),
        (json!({"max_msgs": 3}), "bad_request"),
        (json!(3), "bad_request"),
    ] {
        let request = json!({"name": "t", "publisher": "p", "limits": body});
        a.http_post("/topics", request.clone())
            .await
            .assert_code(400, code, &request.to_string());
    }
    a.http_get("/topics/t")
        .await
        .assert_error(404, "topic_not_found");

    let created = a
        .http_post(
            "/topics",
            json!({"name": "t", "publisher": "p", "limits": {"max_messages": 3}}),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.json()["limits"], json!({"max_messages": 3}));
    eventually(WAIT, "the peer shows the limits", || async {
        b.http_get("/topics/t").await.json()["limits"] == json!({"max_messages": 3})
    })
    .await;
    // A topic without limits shows `{}`.
    client.create_topic("plain", "p").await.unwrap();
    assert_eq!(
        a.http_get("/topics/plain").await.json()["limits"],
        json!({})
    );

    // Past max_messages the oldest go, although nobody acknowledged them.
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    let ten: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    client.publish_batch("t", "p", ten).await.unwrap();
    for broker in [a, b] {
        stores_exactly(broker, &["m7", "m8", "m9"], "three newest kept").await;
    }
    pulls_exactly(&client, "s", &["m7", "m8", "m9"], "the newest three").await;

    // Only the owner changes them; the answer is the topic, limits replaced.
    let bytes = json!({"max_bytes": 10});
    put(
        a,
        "/topics/t/limits",
        json!({"publisher": "q", "limits": bytes}),
    )
    .await
    .assert_error(403, "not_topic_owner");
    put(
        a,
        "/topics/nope/limits",
        json!({"publisher": "p", "limits": bytes}),
    )
    .await
    .assert_error(404, "topic_not_found");
    put(
        a,
        "/topics/t/limits",
        json!({"publisher": "p", "limits": {"max_bytes": 0}}),
    )
    .await
    .assert_error(400, "bad_request");
    let changed = put(
        b,
        "/topics/t/limits",
        json!({"publisher": "p", "limits": bytes}),
    )
    .await;
    changed.assert_status(200);
    let topic = changed.json();
    assert_eq!(topic["limits"], bytes, "{topic}");
    assert_eq!(topic["name"], json!("t"), "{topic}");
    // max_bytes counts UTF-8 bytes: 2 + 2 + 6 fit, the oldest goes.
    client.publish("t", "p", "ééé").await.unwrap();
    for broker in [a, b] {
        stores_exactly(broker, &["m8", "m9", "ééé"], "ten payload bytes kept").await;
    }

    // max_age: everything older than a second goes.
    put(
        a,
        "/topics/t/limits",
        json!({"publisher": "p", "limits": {"max_age": "1s"}}),
    )
    .await
    .assert_status(200);
    for broker in [a, b] {
        stores_exactly(broker, &[], "old messages expire").await;
        let limits = broker.http_get("/topics/t").await.json()["limits"].clone();
        assert_eq!(limits, json!({"max_age": "1s"}), "{}", broker.id());
    }
}

/// Publishes `payloads` on `t` one request each, in order.
async fn publish_each(client: &Client, payloads: &[&str]) {
    for payload in payloads {
        client.publish("t", "p", payload).await.unwrap();
    }
}

async fn seek(broker: &Broker, sid: &str, to: Value) -> Answer {
    broker
        .http_post(
            &format!("/subscribers/{sid}/subscriptions/t/seek"),
            json!({ "to": to }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_on_one_broker_moves_the_position_on_another() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.broker(0), cluster.broker(1));
    let (ca, cb) = (cluster.client(0), cluster.client(1));
    topic_of(&ca, "p", "t").await;
    subscribed(&ca, "s", "t", StartFrom::Earliest).await;
    // Retention deletes what every subscriber acknowledged: this one
    // never acknowledges, so a seek back finds every message.
    subscribed(&ca, "keeper", "t", StartFrom::Earliest).await;
    publish_each(&ca, &["m1", "m2", "m3", "m4", "m5", "m6"]).await;
    let all = ["m1", "m2", "m3", "m4", "m5", "m6"];
    let pulled = ca.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&pulled), all);
    ca.ack("s", &pulled.cursor).await.unwrap();
    pulls_exactly(&cb, "s", &[], "the acknowledgement reaches b").await;

    // Backwards after the acknowledgement, taken on b, obeyed on a.
    seek(b, "s", json!("earliest")).await.assert_status(204);
    let again = pulls_exactly(&ca, "s", &all, "everything again on a").await;
    // At a message itself, and at a time.
    seek(b, "s", json!({"id": again[3].id}))
        .await
        .assert_status(204);
    pulls_exactly(&ca, "s", &["m4", "m5", "m6"], "from m4 on a").await;
    let time_ms = again[2].published_at_ms;
    seek(b, "s", json!({ "time_ms": time_ms }))
        .await
        .assert_status(204);
    let from_time: Vec<&str> = all
        .iter()
        .zip(&again)
        .filter(|(_, m)| m.published_at_ms >= time_ms)
        .map(|(p, _)| *p)
        .collect();
    pulls_exactly(&ca, "s", &from_time, "from the time of m3 on a").await;
    // Forwards to the end: only what comes next.
    seek(b, "s", json!("latest")).await.assert_status(204);
    pulls_exactly(&ca, "s", &[], "nothing after latest").await;
    ca.publish("t", "p", "m7").await.unwrap();
    pulls_exactly(&ca, "s", &["m7"], "only the new message").await;
    // Acknowledging after a seek moves on from the sought position.
    seek(a, "s", json!("earliest")).await.assert_status(204);
    pulls_exactly(&ca, "s", &["m1", "m2", "m3", "m4", "m5", "m6", "m7"], "all").await;
    let first_three = ca.pull("s", &at_once(Some("t"), Some(3))).await.unwrap();
    assert_eq!(payloads(&first_three), ["m1", "m2", "m3"]);
    ca.ack("s", &first_three.cursor).await.unwrap();
    pulls_exactly(&cb, "s", &["m4", "m5", "m6", "m7"], "b after the ack").await;

    // A subscription that started at "latest" reads what came before it
    // once it seeks back.
    subscribed(&cb, "late", "t", StartFrom::Latest).await;
    pulls_exactly(&cb, "late", &[], "nothing yet").await;
    seek(b, "late", json!("earliest")).await.assert_status(204);
    pulls_exactly(
        &ca,
        "late",
        &["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
        "history",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_pulled_before_a_seek_acknowledges_nothing_after_it() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "keeper", "t", StartFrom::Earliest).await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    publish_each(&client, &["m1", "m2", "m3"]).await;
    let before = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&before), ["m1", "m2", "m3"]);
    seek(&broker, "s", json!("earliest"))
        .await
        .assert_status(204);
    // Acknowledging the older pull (as a late auto_ack would) is taken
    // (204) but does not undo the seek.
    client.ack("s", &before.cursor).await.unwrap();
    let after = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&after), ["m1", "m2", "m3"]);
    // A pull after the seek acknowledges as usual.
    client.ack("s", &after.cursor).await.unwrap();
    pulls_exactly(&client, "s", &[], "acknowledged after the seek").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_seeks_back_over_acknowledgements_by_id() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.broker(0), cluster.broker(1));
    let (ca, cb) = (cluster.client(0), cluster.client(1));
    topic_of(&ca, "p", "t").await;
    subscribed(&ca, "keeper", "t", StartFrom::Earliest).await;
    subscribed_shared(a, "w", "t", json!({"ack_wait_ms": 1000})).await;
    publish_each(&ca, &["m1", "m2", "m3"]).await;
    let leased = ca.pull("w", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&leased), ["m1", "m2", "m3"]);
    // m1 and m3 are acknowledged by id; m2 only comes again, on b too,
    // once its lease ends.
    let ids = vec![leased.messages[0].id.clone(), leased.messages[2].id.clone()];
    ca.ack_ids("w", &ids).await.unwrap();
    let m2 = pulls_exactly(&cb, "w", &["m2"], "b gives out m2 alone").await;
    assert!(m2[0].deliveries >= 2, "{m2:?}");

    // Back to the start, on b: every message again on a, leases and
    // delivery counts of the old epoch forgotten.
    seek(b, "w", json!("earliest")).await.assert_status(204);
    let again = pulls_exactly(&ca, "w", &["m1", "m2", "m3"], "all three on a").await;
    let counts: Vec<u32> = again.iter().map(|m| m.deliveries).collect();
    assert_eq!(counts, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seeks_are_refused_and_change_nothing() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    client.publish("t", "p", "m1").await.unwrap();
    let held = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    let unknown = format!("{}/999", broker.id());
    for (to, status, code) in [
        (json!("middle"), 400, "bad_request"),
        (json!({"id": "nope"}), 400, "bad_request"),
        (json!({"id": unknown}), 400, "bad_request"),
        (json!({"time_ms": "noon"}), 400, "bad_request"),
        (json!({}), 400, "bad_request"),
        (
            json!({"time_ms": 0, "id": held.messages[0].id}),
            400,
            "bad_request",
        ),
    ] {
        seek(&broker, "s", to.clone())
            .await
            .assert_code(status, code, &to.to_string());
    }
    seek(&broker, "nobody", json!("earliest"))
        .await
        .assert_error(404, "subscriber_not_found");
    client.register_subscriber("other").await.unwrap();
    seek(&broker, "other", json!("earliest"))
        .await
        .assert_error(404, "not_subscribed");
    let after = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
    assert_eq!(payloads(&after), payloads(&held));
}
