//! The broker's HTTP API (API.md §2–§3) against one real broker process:
//! exact statuses, bodies and error codes, and that refused requests change
//! nothing.

mod support;

use std::time::{Duration, Instant};

use client::http::Created;
use client::wire::{Message, PullQuery, Pulled, StartFrom};
use client::Client;
use serde_json::{json, Value};
use support::{
    at_once, eventually, metric_now, payloads, start_with_topic, subscribed, topic_of, Answer,
    Broker,
};

const P1: &str = "pub-1";
const P2: &str = "pub-2";
const S1: &str = "sub-1";
const S2: &str = "sub-2";
const T: &str = "news";

/// A broker where `P1` created topic `T` and `S1` subscribes to it from the
/// earliest message; returns the broker and a client of it.
async fn broker_with_subscriber() -> (Broker, Client) {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    subscribed(&client, S1, T, StartFrom::Earliest).await;
    (broker, client)
}

/// A broker where `P1` created topics `t1` and `t2` and `S1` subscribes to
/// both from the earliest message; returns the broker and a client of it.
async fn subscriber_of_two_topics() -> (Broker, Client) {
    let (broker, client) = start_with_topic(&[], P1, "t1").await;
    client.create_topic("t2", P1).await.expect("t2");
    subscribed(&client, S1, "t1", StartFrom::Earliest).await;
    let second = client.subscribe(S1, "t2", StartFrom::Earliest).await;
    second.expect("subscribe t2");
    (broker, client)
}

/// Publishes each `(topic, payload)` in turn as `P1`.
async fn publish_each(client: &Client, messages: &[(&str, &str)]) {
    for (topic, payload) in messages {
        client.publish(topic, P1, payload).await.expect("publish");
    }
}

/// What `sid` is given now on `topic` (up to the default max), without waiting.
async fn pull_now(client: &Client, sid: &str, topic: &str) -> Pulled {
    let query = at_once(Some(topic), None);
    client
        .pull(sid, &query)
        .await
        .expect("pull without waiting")
}

/// What `sid` is given now on `topic` (`None`: on every subscription), at
/// most `max` messages, without waiting.
async fn pull_up_to(client: &Client, sid: &str, topic: Option<&str>, max: u32) -> Pulled {
    let query = at_once(topic, Some(max));
    client.pull(sid, &query).await.expect("pull up to max")
}

/// The number of messages `topic` holds.
async fn message_count(client: &Client, topic: &str) -> u64 {
    client.topic(topic).await.expect("GET topic").messages
}

/// A request body: (content type, bytes).
type Body = Option<(&'static str, Vec<u8>)>;

/// `bytes` sent as if they were JSON.
fn malformed(bytes: &str) -> Body {
    Some(("application/json", bytes.as_bytes().to_vec()))
}

/// POSTs each of `bodies`, then each of the unparsable texts `raw`, to
/// `path`, expecting 400 `bad_request` for every one; a failure names the
/// body after `label`.
async fn refuse_bad_requests(
    broker: &Broker,
    path: &str,
    label: &str,
    bodies: &[Value],
    raw: &[&str],
) {
    for body in bodies {
        let answer = broker.http_post(path, body.clone()).await;
        answer.assert_code(400, "bad_request", &format!("{label}{body}"));
    }
    for raw in raw {
        let answer = broker.http_send("POST", path, malformed(raw)).await;
        answer.assert_error(400, "bad_request");
    }
}

/// Sends `method` to each listed path without a body and asserts the error
/// status and code listed with it.
async fn refuse_each(broker: &Broker, method: &str, cases: &[(&str, u16, &str)]) {
    for &(path, status, code) in cases {
        let answer = broker.http_send(method, path, None).await;
        answer.assert_error(status, code);
    }
}

/// POSTs `payload` as one message of `P1` to topic `T`, raw.
async fn post_payload(broker: &Broker, payload: String) -> Answer {
    let body = json!({"publisher": P1, "payload": payload});
    broker
        .http_post(&format!("/topics/{T}/messages"), body)
        .await
}

/// POSTs `payloads` (a JSON array) as one batch of `P1` to topic `T`, raw.
async fn post_batch(broker: &Broker, payloads: Value) -> Answer {
    let body = json!({"publisher": P1, "payloads": payloads});
    broker
        .http_post(&format!("/topics/{T}/messages"), body)
        .await
}

/// POSTs `payloads` as one batch, expecting 413 `payload_too_large`, and
/// asserts that topic `T` still holds `count` messages.
async fn refuse_batch(broker: &Broker, client: &Client, payloads: Value, count: u64) {
    post_batch(broker, payloads)
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(message_count(client, T).await, count);
}

/// Publishes `fits` (expecting 201), then `over` (expecting 413
/// `payload_too_large`), each as one message of `P1` to topic `T`.
async fn publish_at_the_limit(broker: &Broker, fits: String, over: String) {
    post_payload(broker, fits).await.assert_status(201);
    let answer = post_payload(broker, over).await;
    answer.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn health_names_the_broker() {
    let broker = Broker::start().await;
    let answer = broker.http_get("/health").await;
    answer
        .assert_status(200)
        .assert_content_type("application/json");
    let body = answer.json();
    assert_eq!(body["broker"], json!(broker.id()), "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
}

#[tokio::test]
async fn cluster_of_one_names_itself_leader() {
    let broker = Broker::start().await;
    let answer = broker.http_get("/cluster").await;
    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["self"], json!(broker.id()), "{body}");
    assert_eq!(body["leader"], json!(broker.id()), "{body}");
    assert!(body["term"].as_u64().is_some_and(|t| t >= 1), "{body}");
    assert_eq!(body["mode"], json!("gossip"), "{body}");
    assert!(body["lamport"].is_u64(), "{body}");
    let members = body["members"].as_array().expect("members array");
    assert!(
        members
            .iter()
            .any(|m| m["id"] == json!(broker.id()) && m["alive"] == json!(true)),
        "self is not an alive member: {body}"
    );

    // The Lamport clock grows with events.
    let client = broker.client();
    let before = client.cluster().await.expect("cluster").lamport;
    topic_of(&client, P1, T).await;
    let published = client.publish(T, P1, "tick").await.expect("publish");
    let after = client.cluster().await.expect("cluster").lamport;
    assert!(after > before, "lamport {before} -> {after}");
    assert!(after >= published.lamport, "clock {after} < {published:?}");
    // `have`: this broker holds its own events up to the last one.
    let have = client.cluster().await.expect("cluster").have;
    assert_eq!(
        have.get(&published.origin),
        Some(&published.seq),
        "{have:?}"
    );
}

#[tokio::test]
async fn registration_is_idempotent_and_checks_names() {
    let broker = Broker::start().await;
    for kind in ["publishers", "subscribers"] {
        let path = format!("/{kind}");
        let first = broker.http_post(&path, json!({"id": "alice"})).await;
        first.assert_status(201);
        assert_eq!(first.json()["id"], json!("alice"), "{kind}: {}", first.text);
        let again = broker.http_post(&path, json!({"id": "alice"})).await;
        again.assert_status(200);
        assert_eq!(again.json()["id"], json!("alice"), "{kind}: {}", again.text);

        for good in ["x".repeat(128), "A-z_0.9".to_string(), "7".to_string()] {
            let answer = broker.http_post(&path, json!({ "id": good })).await;
            assert_eq!(answer.status, 201, "{kind} {good:?}: {}", answer.text);
        }

        let too_long = "x".repeat(129);
        for bad in [
            "",
            too_long.as_str(),
            "a b",
            "a/b",
            "é",
            "a:b",
            "tab\t",
            "a\u{0}b",
            "semi;colon",
        ] {
            let answer = broker.http_post(&path, json!({ "id": bad })).await;
            answer.assert_error(400, "invalid_name");
        }

        let bodies = [
            json!({}),
            json!({"id": 5}),
            json!({"id": null}),
            json!({"id": ["alice"]}),
            json!("alice"),
        ];
        let raw = ["{\"id\": ", "", "id=alice", "{\"id\": \"bob\",}"];
        refuse_bad_requests(&broker, &path, &format!("{kind} "), &bodies, &raw).await;
    }

    // The refused names were not registered: a topic cannot be created by them.
    let answer = broker
        .http_post("/topics", json!({"name": "t", "publisher": "bob"}))
        .await;
    answer.assert_error(404, "publisher_not_found");
}

#[tokio::test]
async fn topics_are_created_listed_and_fetched() {
    let broker = Broker::start().await;
    let client = broker.client();
    client.register_publisher(P1).await.expect("register P1");
    client.register_publisher(P2).await.expect("register P2");
    let name = "news.v1_a-B";

    let created = broker
        .http_post("/topics", json!({"name": name, "publisher": P1}))
        .await;
    created.assert_status(201);
    let body = created.json();
    assert_eq!(body["name"], json!(name), "{body}");
    assert_eq!(body["created_by"], json!(P1), "{body}");

    for publisher in [P1, P2] {
        broker
            .http_post("/topics", json!({"name": name, "publisher": publisher}))
            .await
            .assert_error(409, "topic_exists");
    }
    broker
        .http_post("/topics", json!({"name": "other", "publisher": "ghost"}))
        .await
        .assert_error(404, "publisher_not_found");
    let too_long = "t".repeat(129);
    for bad in ["", "a b", too_long.as_str(), "a/b", "ü", "a?b"] {
        broker
            .http_post("/topics", json!({"name": bad, "publisher": P1}))
            .await
            .assert_error(400, "invalid_name");
    }
    let bodies = [
        json!({}),
        json!({"name": "x"}),
        json!({"publisher": P1}),
        json!({"name": 5, "publisher": P1}),
        json!({"name": "x", "publisher": false}),
    ];
    refuse_bad_requests(&broker, "/topics", "", &bodies, &["{\"name\": \"x\""]).await;

    // Only the one topic exists, empty.
    let list = broker.http_get("/topics").await;
    list.assert_status(200);
    let expected = json!({"name": name, "created_by": P1, "messages": 0, "subscribers": 0});
    let list = list.json();
    let entries = list.as_array().expect("GET /topics is an array");
    assert_eq!(entries.len(), 1, "{list}");
    for key in ["name", "created_by", "messages", "subscribers"] {
        assert_eq!(entries[0][key], expected[key], "{key} in {list}");
    }
    let one = broker.http_get(&format!("/topics/{name}")).await;
    one.assert_status(200);
    let one = one.json();
    for key in ["name", "created_by", "messages", "subscribers"] {
        assert_eq!(one[key], expected[key], "{key} in {one}");
    }
    broker
        .http_get("/topics/nope")
        .await
        .assert_error(404, "topic_not_found");

    // Counts follow publishes and subscriptions.
    client.publish(name, P1, "one").await.expect("publish");
    client
        .publish_batch(name, P1, vec!["two".into(), "three".into()])
        .await
        .expect("publish batch");
    subscribed(&client, S1, name, StartFrom::Latest).await;
    client
        .create_topic("second", P2)
        .await
        .expect("second topic");
    let info = client.topic(name).await.expect("GET topic");
    assert_eq!((info.messages, info.subscribers), (3, 1), "{info:?}");

    // The longest name works everywhere a name goes, paths included.
    let longest = "L".repeat(128);
    client.create_topic(&longest, P2).await.expect("128 chars");
    client.publish(&longest, P2, "long").await.expect("publish");
    client
        .subscribe(S1, &longest, StartFrom::Earliest)
        .await
        .expect("subscribe");
    assert_eq!(payloads(&pull_now(&client, S1, &longest).await), ["long"]);
    client.delete_topic(&longest, P2).await.expect("delete");

    let all = client.topics().await.expect("GET /topics");
    assert_eq!(all.len(), 2, "{all:?}");
    let second = all.iter().find(|t| t.name == "second").expect("second");
    assert_eq!(
        (
            second.created_by.as_str(),
            second.messages,
            second.subscribers
        ),
        (P2, 0, 0)
    );
}

#[tokio::test]
async fn deleting_a_topic_removes_its_messages_and_subscriptions() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    client.register_publisher(P2).await.expect("register P2");
    subscribed(&client, S1, T, StartFrom::Earliest).await;
    client
        .publish_batch(T, P1, vec!["old-1".into(), "old-2".into()])
        .await
        .expect("publish");

    let no_publisher = format!("/topics/{T}");
    let not_owner = format!("/topics/{T}?publisher={P2}");
    let missing = format!("/topics/nope?publisher={P1}");
    let cases = [
        (no_publisher.as_str(), 400, "bad_request"),
        (&not_owner, 403, "not_topic_owner"),
        (&missing, 404, "topic_not_found"),
    ];
    refuse_each(&broker, "DELETE", &cases).await;
    // Nothing changed so far.
    let info = client.topic(T).await.expect("GET topic");
    assert_eq!((info.messages, info.subscribers), (2, 1), "{info:?}");

    let deleted = broker
        .http_delete(&format!("/topics/{T}?publisher={P1}"))
        .await;
    deleted.assert_status(204);
    assert!(
        deleted.text.is_empty(),
        "204 with a body: {:?}",
        deleted.text
    );

    broker
        .http_get(&format!("/topics/{T}"))
        .await
        .assert_error(404, "topic_not_found");
    assert!(client.topics().await.expect("topics").is_empty());
    broker
        .http_get(&format!("/subscribers/{S1}/messages?topic={T}&wait_ms=0"))
        .await
        .assert_error(404, "topic_not_found");
    broker
        .http_post(
            &format!("/topics/{T}/messages"),
            json!({"publisher": P1, "payload": "late"}),
        )
        .await
        .assert_error(404, "topic_not_found");
    broker
        .http_delete(&format!("/topics/{T}?publisher={P1}"))
        .await
        .assert_error(404, "topic_not_found");
    // Without a topic, the subscriber has nothing left to read.
    let everything = client
        .pull(S1, &at_once(None, None))
        .await
        .expect("pull all");
    assert!(everything.messages.is_empty(), "{everything:?}");

    // The same name again is a new, empty topic without subscribers.
    client.create_topic(T, P2).await.expect("re-create");
    let info = client.topic(T).await.expect("GET topic");
    assert_eq!(
        (info.created_by.as_str(), info.messages, info.subscribers),
        (P2, 0, 0),
        "{info:?}"
    );
    broker
        .http_get(&format!("/subscribers/{S1}/messages?topic={T}&wait_ms=0"))
        .await
        .assert_error(404, "not_subscribed");
    client.publish(T, P2, "new").await.expect("publish");
    client
        .subscribe(S1, T, StartFrom::Earliest)
        .await
        .expect("subscribe again");
    let pulled = pull_now(&client, S1, T).await;
    assert_eq!(payloads(&pulled), ["new"], "{pulled:?}");
}

#[tokio::test]
async fn publish_returns_ids_seqs_and_lamports() {
    let (broker, client) = broker_with_subscriber().await;
    let path = format!("/topics/{T}/messages");

    let single = broker
        .http_post(&path, json!({"publisher": P1, "payload": "hello"}))
        .await;
    single.assert_status(201);
    let single = single.json();
    assert_eq!(single["origin"], json!(broker.id()), "{single}");
    let seq = single["seq"].as_u64().expect("seq is a number");
    let lamport = single["lamport"].as_u64().expect("lamport is a number");
    assert!(seq >= 1 && lamport >= 1, "{single}");
    assert_eq!(
        single["id"],
        json!(format!("{}/{seq}", broker.id())),
        "{single}"
    );

    let batch = broker
        .http_post(&path, json!({"publisher": P1, "payloads": ["a", "b", "c"]}))
        .await;
    batch.assert_status(201);
    let batch = batch.json();
    let items = batch["messages"].as_array().expect("messages array");
    assert_eq!(items.len(), 3, "{batch}");
    let (mut last_seq, mut last_lamport) = (seq, lamport);
    for item in items {
        let s = item["seq"].as_u64().expect("seq");
        let l = item["lamport"].as_u64().expect("lamport");
        assert!(s > last_seq, "seq not increasing: {batch}");
        assert!(l > last_lamport, "lamport not increasing: {batch}");
        assert_eq!(item["origin"], json!(broker.id()), "{item}");
        assert_eq!(item["id"], json!(format!("{}/{s}", broker.id())), "{item}");
        (last_seq, last_lamport) = (s, l);
    }

    // seq counts every event of the broker: a registration takes a number.
    client.register_subscriber(S2).await.expect("register S2");
    let after = client.publish(T, P1, "after").await.expect("publish");
    assert!(
        after.seq > last_seq + 1,
        "a registration between two publishes left no gap: {last_seq} then {after:?}"
    );
    assert!(after.lamport > last_lamport, "{after:?}");

    // Pulled messages are the full objects of §3, oldest first.
    let unicode = "héllo ✓ \"quoted\" \\ back\nslash";
    let last = client.publish(T, P1, unicode).await.expect("publish");
    let answer = broker
        .http_get(&format!("/subscribers/{S1}/messages?topic={T}&wait_ms=0"))
        .await;
    answer.assert_status(200);
    let body = answer.json();
    assert!(body["cursor"].is_string(), "{body}");
    let messages = body["messages"].as_array().expect("messages array");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["payload"].as_str().expect("payload"))
        .collect();
    assert_eq!(texts, ["hello", "a", "b", "c", "after", unicode]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for m in messages {
        let m: Message = serde_json::from_value(m.clone()).expect("a full message object");
        assert_eq!(m.id, format!("{}/{}", m.origin, m.seq), "{m:?}");
        assert_eq!((m.topic.as_str(), m.publisher.as_str()), (T, P1));
        assert!(
            (now_ms - m.published_at_ms).abs() < 600_000,
            "published_at_ms {} is not near now {now_ms}",
            m.published_at_ms
        );
    }
    let final_message = &messages[messages.len() - 1];
    assert_eq!(final_message["id"], json!(last.id));
    assert_eq!(final_message["seq"], json!(last.seq));
    assert_eq!(final_message["lamport"], json!(last.lamport));
}

#[tokio::test]
async fn refused_publishes_change_nothing() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    let path = format!("/topics/{T}/messages");

    for body in [
        json!({"publisher": P1, "payload": "a", "payloads": ["b"]}),
        json!({"publisher": P1}),
        json!({"publisher": P1, "payloads": []}),
        json!({"publisher": P1, "payload": 5}),
        json!({"publisher": P1, "payload": {"text": "a"}}),
        json!({"publisher": P1, "payload": ["a"]}),
        json!({"publisher": P1, "payloads": "a"}),
        json!({"publisher": P1, "payloads": ["a", 5]}),
        json!({"payload": "a"}),
        json!({"publisher": 5, "payload": "a"}),
        json!({"publisher": null, "payload": "a"}),
        json!("a"),
    ] {
        let answer = broker.http_post(&path, body.clone()).await;
        answer.assert_code(400, "bad_request", &body.to_string());
        answer.assert_error(400, "bad_request");
    }
    let raw = [
        "",
        "{",
        "not json",
        "{\"publisher\": \"pub-1\", \"payload\": \"a\"",
        "{\"publisher\": \"pub-1\", \"payload\": \"a\"} trailing",
    ];
    refuse_bad_requests(&broker, &path, "", &[], &raw).await;
    let to_missing_topic = json!({"publisher": P1, "payload": "a"});
    let by_ghost = json!({"publisher": "ghost", "payload": "a"});
    let batch_by_ghost = json!({"publisher": "ghost", "payloads": ["a", "b"]});
    for (path, body, code) in [
        ("/topics/nope/messages", to_missing_topic, "topic_not_found"),
        (&path, by_ghost, "publisher_not_found"),
        (&path, batch_by_ghost, "publisher_not_found"),
    ] {
        broker.http_post(path, body).await.assert_error(404, code);
    }

    assert_eq!(message_count(&client, T).await, 0);
    assert!(broker.stored_payloads(T).is_empty());
    let ok = client.publish(T, P1, "still works").await.expect("publish");
    assert_eq!(message_count(&client, T).await, 1, "{ok:?}");
}

#[tokio::test]
async fn payload_limit_counts_utf8_bytes() {
    let (broker, client) = start_with_topic(&["--max-payload-bytes", "1000"], P1, T).await;

    publish_at_the_limit(&broker, "x".repeat(1000), "x".repeat(1001)).await;
    // 500 two-byte characters are 1000 bytes; 501 are 1002 bytes.
    publish_at_the_limit(&broker, "é".repeat(500), "é".repeat(501)).await;
    assert_eq!(message_count(&client, T).await, 2);

    // One oversized item refuses the whole batch.
    let batch = json!(["ok-1", "x".repeat(1001), "ok-2"]);
    refuse_batch(&broker, &client, batch, 2).await;
    let stored = broker.stored_payloads(T);
    assert!(
        !stored.iter().any(|p| p.starts_with("ok-")),
        "part of a refused batch was stored"
    );
}

#[tokio::test]
async fn default_payload_limit_is_one_mebibyte() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    publish_at_the_limit(&broker, "y".repeat(1 << 20), "y".repeat((1 << 20) + 1)).await;
    // 17 payloads of 1 MiB each are allowed one by one but the body is over 16 MiB.
    let many: Vec<String> = (0..17).map(|i| format!("{i:02}").repeat(1 << 19)).collect();
    refuse_batch(&broker, &client, json!(many), 1).await;
}

#[tokio::test]
async fn body_limit_is_16_mib_or_8_payloads() {
    // max-payload-bytes 2000: the body limit is 16 MiB (batches stay under
    // the 10,000-payload cap).
    let (broker, client) = start_with_topic(&["--max-payload-bytes", "2000"], P1, T).await;
    let item = "z".repeat(2000);
    let under: Vec<&str> = vec![item.as_str(); 8_000]; // about 16.02 MB < 16 MiB
    let answer = post_batch(&broker, json!(under)).await;
    answer.assert_status(201);
    assert_eq!(
        answer.json()["messages"].as_array().map(Vec::len),
        Some(8_000)
    );
    let over: Vec<&str> = vec![item.as_str(); 9_000]; // about 18.03 MB > 16 MiB
    refuse_batch(&broker, &client, json!(over), 8_000).await;
    drop(broker);

    // max-payload-bytes 3 MiB: the body limit is 8 × 3 MiB = 24 MiB.
    let (broker, client) = start_with_topic(&["--max-payload-bytes", "3145728"], P1, T).await;
    let big = "b".repeat(3 << 20);
    let six: Vec<&str> = vec![big.as_str(); 6]; // 18 MiB
    post_batch(&broker, json!(six)).await.assert_status(201);
    let nine: Vec<&str> = vec![big.as_str(); 9]; // 27 MiB
    refuse_batch(&broker, &client, json!(nine), 6).await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    client.register_subscriber(S1).await.expect("register S1");
    let path = format!("/subscribers/{S1}/subscriptions");

    // First new (201), then already there (200).
    for (body, status) in [
        (json!({"topic": T}), 201),
        (json!({"topic": T, "from": "earliest"}), 200),
    ] {
        let answer = broker.http_post(&path, body).await;
        answer.assert_status(status);
        let body = answer.json();
        assert_eq!(
            (&body["subscriber"], &body["topic"]),
            (&json!(S1), &json!(T)),
            "{body}"
        );
    }
    assert_eq!(client.topic(T).await.expect("topic").subscribers, 1);

    broker
        .http_post(
            "/subscribers/ghost/subscriptions",
            json!({"topic": T, "from": "latest"}),
        )
        .await
        .assert_error(404, "subscriber_not_found");
    broker
        .http_post(&path, json!({"topic": "nope", "from": "latest"}))
        .await
        .assert_error(404, "topic_not_found");
    let bodies = [
        json!({"topic": T, "from": "middle"}),
        json!({"topic": T, "from": 5}),
        json!({"topic": T, "from": "EARLIEST"}),
        json!({"from": "latest"}),
        json!({"topic": 5}),
    ];
    refuse_bad_requests(&broker, &path, "", &bodies, &["{\"topic\":"]).await;

    let unsubscribe = format!("/subscribers/{S1}/subscriptions/{T}");
    let gone = broker.http_delete(&unsubscribe).await;
    gone.assert_status(204);
    assert!(gone.text.is_empty(), "204 with a body: {:?}", gone.text);
    assert_eq!(client.topic(T).await.expect("topic").subscribers, 0);
    let ghost = format!("/subscribers/ghost/subscriptions/{T}");
    let missing = format!("/subscribers/{S1}/subscriptions/nope");
    for (path, code) in [
        (&unsubscribe, "not_subscribed"),
        (&ghost, "subscriber_not_found"),
        (&missing, "topic_not_found"),
    ] {
        broker.http_delete(path).await.assert_error(404, code);
    }
    broker
        .http_get(&format!("/subscribers/{S1}/messages?topic={T}&wait_ms=0"))
        .await
        .assert_error(404, "not_subscribed");

    // Subscribing again is new (201) and starts from "latest".
    client.publish(T, P1, "while away").await.expect("publish");
    assert_eq!(
        client
            .subscribe(S1, T, StartFrom::Latest)
            .await
            .expect("subscribe"),
        Created::New
    );
    client.publish(T, P1, "back").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["back"]);
}

#[tokio::test]
async fn from_latest_skips_and_from_earliest_replays() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    client
        .publish_batch(T, P1, vec!["m1".into(), "m2".into()])
        .await
        .expect("publish");

    client.register_subscriber(S1).await.expect("register");
    client.register_subscriber(S2).await.expect("register");
    client.register_subscriber("sub-3").await.expect("register");
    // No "from" at all means latest.
    broker
        .http_post(
            &format!("/subscribers/{S1}/subscriptions"),
            json!({"topic": T}),
        )
        .await
        .assert_status(201);
    broker
        .http_post(
            &format!("/subscribers/{S2}/subscriptions"),
            json!({"topic": T, "from": "earliest"}),
        )
        .await
        .assert_status(201);
    broker
        .http_post(
            "/subscribers/sub-3/subscriptions",
            json!({"topic": T, "from": "latest"}),
        )
        .await
        .assert_status(201);

    assert!(pull_now(&client, S1, T).await.messages.is_empty());
    assert!(pull_now(&client, "sub-3", T).await.messages.is_empty());
    assert_eq!(payloads(&pull_now(&client, S2, T).await), ["m1", "m2"]);

    client.publish(T, P1, "m3").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m3"]);
    assert_eq!(payloads(&pull_now(&client, "sub-3", T).await), ["m3"]);
    assert_eq!(
        payloads(&pull_now(&client, S2, T).await),
        ["m1", "m2", "m3"]
    );

    // Subscribing again does not reset the position.
    let pulled = pull_now(&client, S2, T).await;
    client.ack(S2, &pulled.cursor).await.expect("ack");
    client
        .subscribe(S2, T, StartFrom::Earliest)
        .await
        .expect("subscribe again");
    assert!(pull_now(&client, S2, T).await.messages.is_empty());
}

#[tokio::test]
async fn messages_repeat_until_acked() {
    let (broker, client) = broker_with_subscriber().await;
    let batch = client
        .publish_batch(T, P1, vec!["m1".into(), "m2".into(), "m3".into()])
        .await
        .expect("publish");

    let first = pull_now(&client, S1, T).await;
    assert_eq!(payloads(&first), ["m1", "m2", "m3"]);
    let ids: Vec<&str> = first.messages.iter().map(|m| m.id.as_str()).collect();
    let sent: Vec<&str> = batch.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, sent);
    let again = pull_now(&client, S1, T).await;
    assert_eq!(
        payloads(&again),
        ["m1", "m2", "m3"],
        "not acked: delivered again"
    );

    let acked = broker
        .http_post(
            &format!("/subscribers/{S1}/ack"),
            json!({"cursor": again.cursor}),
        )
        .await;
    acked.assert_status(204);
    assert!(pull_now(&client, S1, T).await.messages.is_empty());
    // Idempotent.
    client.ack(S1, &again.cursor).await.expect("ack twice");
    client
        .ack(S1, &first.cursor)
        .await
        .expect("ack the first cursor");
    assert!(pull_now(&client, S1, T).await.messages.is_empty());

    // max limits the batch; acking moves on by exactly what was returned.
    client
        .publish_batch(T, P1, vec!["m4".into(), "m5".into()])
        .await
        .expect("publish");
    let one = pull_up_to(&client, S1, Some(T), 1).await;
    assert_eq!(payloads(&one), ["m4"]);
    let both = pull_now(&client, S1, T).await;
    assert_eq!(payloads(&both), ["m4", "m5"]);
    // Ack the newer cursor, then the older one: no step back.
    client.ack(S1, &both.cursor).await.expect("ack newer");
    client.ack(S1, &one.cursor).await.expect("ack older");
    assert!(
        pull_now(&client, S1, T).await.messages.is_empty(),
        "an older cursor moved the position back"
    );
    client.publish(T, P1, "m6").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m6"]);
}

#[tokio::test]
async fn partial_ack_keeps_the_rest() {
    let (_broker, client) = broker_with_subscriber().await;
    client
        .publish_batch(T, P1, (1..=5).map(|i| format!("m{i}")).collect())
        .await
        .expect("publish");
    let two = pull_up_to(&client, S1, Some(T), 2).await;
    assert_eq!(payloads(&two), ["m1", "m2"]);
    client.ack(S1, &two.cursor).await.expect("ack");
    assert_eq!(
        payloads(&pull_now(&client, S1, T).await),
        ["m3", "m4", "m5"]
    );
}

#[tokio::test]
async fn auto_ack_acknowledges_on_delivery() {
    let (broker, client) = broker_with_subscriber().await;
    client
        .publish_batch(T, P1, vec!["a".into(), "b".into()])
        .await
        .expect("publish");
    let answer = broker
        .http_get(&format!(
            "/subscribers/{S1}/messages?topic={T}&wait_ms=0&auto_ack=true"
        ))
        .await;
    answer.assert_status(200);
    let texts: Vec<Value> = answer.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(texts, [json!("a"), json!("b")]);
    assert!(pull_now(&client, S1, T).await.messages.is_empty());
    // auto_ack=false (explicit) keeps them.
    client.publish(T, P1, "c").await.expect("publish");
    let kept = client
        .pull(
            S1,
            &PullQuery {
                auto_ack: Some(false),
                ..at_once(Some(T), None)
            },
        )
        .await
        .expect("pull");
    assert_eq!(payloads(&kept), ["c"]);
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["c"]);
}

#[tokio::test]
async fn back_to_back_auto_acknowledging_pulls_never_repeat_a_message() {
    let (_broker, client) = broker_with_subscriber().await;
    let sent: Vec<String> = (0..30).map(|n| format!("m{n}")).collect();
    client
        .publish_batch(T, P1, sent.clone())
        .await
        .expect("publish");
    // Large batches on another topic keep the writer busy, so that each
    // pull's acknowledgement commits well after the pull has answered; the
    // next pull must still start after it.
    client.create_topic("busy", P1).await.expect("topic");
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let batch: Vec<String> = (0..2000).map(|_| "x".repeat(1000)).collect();
            for _ in 0..100 {
                client
                    .publish_batch("busy", P1, batch.clone())
                    .await
                    .expect("load");
            }
        })
    };
    let query = PullQuery {
        max: Some(1),
        auto_ack: Some(true),
        ..at_once(Some(T), None)
    };
    let mut received = Vec::new();
    for _ in 0..sent.len() {
        let pulled = client.pull(S1, &query).await.expect("pull");
        received.extend(payloads(&pulled).into_iter().map(str::to_string));
    }
    load.abort();
    assert_eq!(received, sent);
    assert!(pull_now(&client, S1, T).await.messages.is_empty());
}

#[tokio::test]
async fn pull_checks_its_query_and_names() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    client.create_topic("other", P1).await.expect("topic");
    subscribed(&client, S1, T, StartFrom::Earliest).await;
    let base = format!("/subscribers/{S1}/messages");

    for query in [
        "max=0",
        "max=abc",
        "max=-1",
        "max=",
        "wait_ms=abc",
        "wait_ms=-5",
        "auto_ack=maybe",
    ] {
        broker
            .http_get(&format!("{base}?topic={T}&{query}"))
            .await
            .assert_error(400, "bad_request");
    }
    let ghost = "/subscribers/ghost/messages?wait_ms=0";
    let missing = format!("{base}?topic=nope&wait_ms=0");
    let other = format!("{base}?topic=other&wait_ms=0");
    let cases = [
        (ghost, 404, "subscriber_not_found"),
        (&missing, 404, "topic_not_found"),
        (&other, 404, "not_subscribed"),
    ];
    refuse_each(&broker, "GET", &cases).await;

    // max above 1000 is capped, not refused.
    let many: Vec<String> = (0..1005).map(|i| format!("m{i}")).collect();
    client.publish_batch(T, P1, many).await.expect("publish");
    let capped = broker
        .http_get(&format!("{base}?topic={T}&max=5000&wait_ms=0"))
        .await;
    capped.assert_status(200);
    let capped = capped.json();
    let got = capped["messages"].as_array().expect("messages");
    assert_eq!(got.len(), 1000, "max=5000 must be capped at 1000");
    assert_eq!(got[0]["payload"], json!("m0"));
    assert_eq!(got[999]["payload"], json!("m999"));
    // The default max is 100.
    let default = broker
        .http_get(&format!("{base}?topic={T}&wait_ms=0"))
        .await;
    default.assert_status(200);
    assert_eq!(
        default.json()["messages"].as_array().map(Vec::len),
        Some(100)
    );
    // wait_ms above 60000 is capped, not refused (messages are there, so no wait).
    let started = Instant::now();
    let long = broker
        .http_get(&format!("{base}?topic={T}&max=1&wait_ms=999999"))
        .await;
    long.assert_status(200);
    assert_eq!(long.json()["messages"].as_array().map(Vec::len), Some(1));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn pull_without_topic_reads_every_subscription() {
    let (_broker, client) = subscriber_of_two_topics().await;
    client.create_topic("t3", P1).await.expect("t3");
    let messages = [("t1", "a"), ("t3", "not mine"), ("t2", "b"), ("t1", "c")];
    publish_each(&client, &messages).await;

    let all = client
        .pull(S1, &at_once(None, None))
        .await
        .expect("pull all");
    assert_eq!(payloads(&all), ["a", "b", "c"]);
    let topics: Vec<&str> = all.messages.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, ["t1", "t2", "t1"]);
    client.ack(S1, &all.cursor).await.expect("ack");
    assert!(pull_now(&client, S1, "t1").await.messages.is_empty());
    assert!(pull_now(&client, S1, "t2").await.messages.is_empty());
    assert!(client
        .pull(S1, &at_once(None, None))
        .await
        .expect("pull all")
        .messages
        .is_empty());
}

#[tokio::test]
async fn bad_acks_are_refused() {
    let (broker, client) = broker_with_subscriber().await;
    subscribed(&client, S2, T, StartFrom::Earliest).await;
    client.publish(T, P1, "m1").await.expect("publish");
    let path = format!("/subscribers/{S1}/ack");

    for cursor in ["", "garbage", "%%%", "eyJ4IjoxfQ", "AAAAAAAAAAAAAAAA"] {
        broker
            .http_post(&path, json!({ "cursor": cursor }))
            .await
            .assert_error(400, "bad_request");
    }
    for body in [json!({}), json!({"cursor": 5}), json!("c")] {
        let answer = broker.http_post(&path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.error_code().as_deref()),
            (400, Some("bad_request")),
            "{body}: {}",
            answer.text
        );
    }
    broker
        .http_send("POST", &path, malformed("{\"cursor\""))
        .await
        .assert_error(400, "bad_request");

    // Another subscriber's cursor is not S1's to use.
    let theirs = pull_now(&client, S2, T).await;
    broker
        .http_post(&path, json!({"cursor": theirs.cursor}))
        .await
        .assert_error(400, "bad_request");

    // Nothing moved.
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m1"]);
    assert_eq!(payloads(&pull_now(&client, S2, T).await), ["m1"]);

    // An unknown subscriber has no cursor of its own: whatever it sends, the
    // answer is that it does not exist.
    for cursor in ["garbage", theirs.cursor.as_str()] {
        broker
            .http_post("/subscribers/ghost/ack", json!({ "cursor": cursor }))
            .await
            .assert_error(404, "subscriber_not_found");
    }
}

/// A cursor token as the broker encodes one: base64url of
/// `[subscriber, [[topic, origin, seq], ...]]`, written by hand.
fn forged_cursor(subscriber: &str, positions: Value) -> String {
    use base64::Engine;
    let json = json!([subscriber, positions]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

#[tokio::test]
async fn forged_cursors_are_refused_and_move_nothing() {
    let (broker, client) = broker_with_subscriber().await;
    topic_of(&client, P1, "other").await;
    client.publish(T, P1, "m1").await.expect("publish");
    let path = format!("/subscribers/{S1}/ack");
    let me = broker.id();

    for positions in [
        json!([[T, me, 1_000_000]]),
        json!([[T, me, 9_223_372_036_854_775_808_u64]]),
        json!([["a b", me, 1]]),
        json!([[T, "not a broker", 1]]),
        json!([[T, me, 1], [T, "", 1]]),
    ] {
        let cursor = forged_cursor(S1, positions.clone());
        let answer = broker.http_post(&path, json!({ "cursor": cursor })).await;
        assert_eq!(
            (answer.status, answer.error_code().as_deref()),
            (400, Some("bad_request")),
            "{positions}: {}",
            answer.text
        );
    }
    let too_many: Vec<Value> = (0..1001).map(|_| json!([T, me, 1])).collect();
    broker
        .http_post(
            &path,
            json!({ "cursor": forged_cursor(S1, json!(too_many)) }),
        )
        .await
        .assert_error(400, "bad_request");

    // A topic S1 does not read is passed over, not recorded.
    let o1 = client.publish("other", P1, "o1").await.expect("publish");
    let other = forged_cursor(S1, json!([["other", me, o1.seq]]));
    broker
        .http_post(&path, json!({ "cursor": other }))
        .await
        .assert_status(204);

    // Nothing moved: m1 and the next message are still delivered, and so is
    // o1 once S1 subscribes to its topic.
    client.publish(T, P1, "m2").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m1", "m2"]);
    subscribed(&client, S1, "other", StartFrom::Earliest).await;
    assert_eq!(payloads(&pull_now(&client, S1, "other").await), ["o1"]);
}

#[tokio::test]
async fn a_batch_holds_at_most_ten_thousand_payloads() {
    let (broker, client) = start_with_topic(&[], P1, T).await;
    let over: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    post_batch(&broker, json!(over))
        .await
        .assert_error(400, "bad_request");
    assert_eq!(message_count(&client, T).await, 0);
    let at_limit: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    post_batch(&broker, json!(at_limit))
        .await
        .assert_status(201);
    assert_eq!(message_count(&client, T).await, 10_000);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let broker = Broker::start().await;
    topic_of(&broker.client(), P1, T).await;
    for path in ["/nope", "/topics/a/b/c/d", "/health/extra", "/"] {
        broker.http_get(path).await.assert_error(404, "not_found");
    }
    for (method, path) in [
        ("POST", "/health"),
        ("PUT", "/topics"),
        ("DELETE", "/publishers"),
        ("PATCH", "/topics/news"),
        ("GET", "/topics/news/messages"),
        ("GET", "/subscribers/s/ack"),
        ("POST", "/metrics"),
        ("POST", "/cluster"),
        ("GET", "/subscribers"),
    ] {
        broker
            .http_send(method, path, None)
            .await
            .assert_error(405, "method_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_publishes_deliveries_and_waiting_pulls() {
    let broker = Broker::start().await;
    let client = broker.client();
    let answer = broker.http_get("/metrics").await;
    answer.assert_status(200).assert_content_type("text/plain");
    for name in [
        "rumor_http_requests_total",
        "rumor_messages_published_total",
        "rumor_messages_delivered_total",
        "rumor_waiting_pulls",
    ] {
        assert!(answer.text.contains(name), "no {name} in:\n{}", answer.text);
    }

    topic_of(&client, P1, T).await;
    subscribed(&client, S1, T, StartFrom::Earliest).await;
    let requests = metric_now(&client, "rumor_http_requests_total").await;
    let published = metric_now(&client, "rumor_messages_published_total").await;
    let delivered = metric_now(&client, "rumor_messages_delivered_total").await;
    assert_eq!(metric_now(&client, "rumor_waiting_pulls").await, 0.0);

    client.publish(T, P1, "one").await.expect("publish");
    client
        .publish_batch(T, P1, vec!["two".into(), "three".into()])
        .await
        .expect("publish");
    let pulled = pull_now(&client, S1, T).await;
    assert_eq!(pulled.messages.len(), 3);
    client.ack(S1, &pulled.cursor).await.expect("ack");

    let now = metric_now(&client, "rumor_messages_published_total").await;
    assert!(now >= published + 3.0, "published {published} -> {now}");
    let now = metric_now(&client, "rumor_messages_delivered_total").await;
    assert!(now >= delivered + 3.0, "delivered {delivered} -> {now}");
    let now = metric_now(&client, "rumor_http_requests_total").await;
    assert!(now >= requests + 4.0, "requests {requests} -> {now}");

    // A waiting pull shows while it waits.
    let poller = client.clone();
    let waiting = tokio::spawn(async move {
        poller
            .pull(
                S1,
                &PullQuery {
                    topic: Some(T.into()),
                    wait_ms: Some(8000),
                    ..PullQuery::default()
                },
            )
            .await
    });
    let c = client.clone();
    eventually(Duration::from_secs(5), "rumor_waiting_pulls is 1", || {
        let c = c.clone();
        async move { metric_now(&c, "rumor_waiting_pulls").await == 1.0 }
    })
    .await;
    client.publish(T, P1, "wake").await.expect("publish");
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting pull was not woken")
        .expect("task")
        .expect("pull");
    assert_eq!(payloads(&woken), ["wake"]);
    eventually(
        Duration::from_secs(5),
        "rumor_waiting_pulls back to 0",
        || {
            let c = c.clone();
            async move { metric_now(&c, "rumor_waiting_pulls").await == 0.0 }
        },
    )
    .await;
}

#[tokio::test]
async fn garbage_requests_neither_crash_nor_change_anything() {
    let (broker, client) = broker_with_subscriber().await;
    client.publish(T, P1, "keep").await.expect("publish");
    let before = client.topics().await.expect("topics");

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<(&str, &str, Body)> = vec![
        (
            "POST",
            "/topics",
            Some(("application/json", vec![0xff, 0xfe, 0x00])),
        ),
        (
            "POST",
            "/publishers",
            Some(("application/json", deep.clone().into_bytes())),
        ),
        (
            "POST",
            "/topics/news/messages",
            Some(("application/json", deep.into_bytes())),
        ),
        (
            "POST",
            "/publishers",
            Some(("application/json", b"{\"id\": 1e999999}".to_vec())),
        ),
        (
            "POST",
            "/topics/news/messages",
            Some((
                "text/plain",
                b"{\"publisher\": \"pub-1\", \"payload\": 7}".to_vec(),
            )),
        ),
        (
            "POST",
            "/topics/news/messages",
            Some((
                "application/json",
                b"{\"publisher\": \"pub-1\", \"payload\": \"\\ud800\"}".to_vec(),
            )),
        ),
        (
            "POST",
            "/subscribers/sub-1/ack",
            Some(("application/json", b"{\"cursor\": \"\\u0000\"}".to_vec())),
        ),
        (
            "GET",
            "/subscribers/sub-1/messages?max=99999999999999999999999&wait_ms=0",
            None,
        ),
        (
            "GET",
            "/subscribers/sub-1/messages?wait_ms=99999999999999999999999&max=1",
            None,
        ),
        (
            "GET",
            "/subscribers/sub-1/messages?topic=%FF%FE&wait_ms=0",
            None,
        ),
        ("GET", "/subscribers/%FF/messages?wait_ms=0", None),
        ("GET", "/topics/%00", None),
        ("DELETE", "/topics/news?publisher=%FF", None),
        ("DELETE", "/subscribers/sub-1/subscriptions/%2F%2E%2E", None),
    ];
    for (method, path, body) in bodies {
        let answer = broker.http_send(method, path, body).await;
        assert!(
            answer.status < 500,
            "{method} {path}: status {} body {:?}",
            answer.status,
            answer.text
        );
        assert!(
            answer.status == 200 || answer.status >= 400,
            "{method} {path} changed something: status {} body {:?}",
            answer.status,
            answer.text
        );
    }
    client.health().await.expect("still healthy");
    assert_eq!(client.topics().await.expect("topics"), before);
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["keep"]);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let (broker, client) = broker_with_subscriber().await;
    client.publish(T, P1, "m1").await.expect("publish");
    let cursor = pull_now(&client, S1, T).await.cursor;
    let before = client.topics().await.expect("topics");

    // Each body carries the right values, but as an array instead of the
    // object the API defines.
    let mut accepted = Vec::new();
    for (path, body) in [
        ("/publishers".to_string(), json!(["alice"])),
        ("/subscribers".to_string(), json!(["bob"])),
        ("/topics".to_string(), json!(["other", P1])),
        (format!("/topics/{T}/messages"), json!([P1, "sneaked in"])),
        (
            format!("/topics/{T}/messages"),
            json!([P1, null, ["sneaked", "in"]]),
        ),
        (
            format!("/subscribers/{S1}/subscriptions"),
            json!(["other", "earliest"]),
        ),
        (format!("/subscribers/{S1}/ack"), json!([cursor])),
    ] {
        let answer = broker.http_post(&path, body.clone()).await;
        if (answer.status, answer.error_code().as_deref()) != (400, Some("bad_request")) {
            accepted.push(format!(
                "POST {path} {body} -> {} {}",
                answer.status, answer.text
            ));
        }
    }
    assert!(
        accepted.is_empty(),
        "expected 400 bad_request for each, got:\n{}",
        accepted.join("\n")
    );
    assert_eq!(client.topics().await.expect("topics"), before);
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m1"]);
    assert_eq!(
        client.register_publisher("alice").await.expect("register"),
        Created::New,
        "an array body registered a publisher"
    );
}

#[tokio::test]
async fn acking_one_topic_leaves_the_others() {
    let (_broker, client) = subscriber_of_two_topics().await;
    let messages = [("t1", "a"), ("t2", "b"), ("t1", "c"), ("t2", "d")];
    publish_each(&client, &messages).await;

    // A pull over every topic, limited to two, acknowledges only those two.
    let two = pull_up_to(&client, S1, None, 2).await;
    assert_eq!(payloads(&two), ["a", "b"]);
    client.ack(S1, &two.cursor).await.expect("ack");
    let rest = client.pull(S1, &at_once(None, None)).await.expect("pull");
    assert_eq!(payloads(&rest), ["c", "d"]);

    // A pull on one topic acknowledges nothing of the other.
    let t1 = pull_now(&client, S1, "t1").await;
    assert_eq!(payloads(&t1), ["c"]);
    client.ack(S1, &t1.cursor).await.expect("ack");
    assert_eq!(payloads(&pull_now(&client, S1, "t2").await), ["d"]);
    assert!(pull_now(&client, S1, "t1").await.messages.is_empty());
}

#[tokio::test]
async fn bodies_that_are_not_declared_json_are_refused_with_415() {
    let (broker, client) = broker_with_subscriber().await;
    let before = client.topics().await.expect("topics");
    let body = br#"{"publisher": "pub-1", "payload": "from a form"}"#.to_vec();
    // What a web page can post across sites without asking, and no type.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "", // no Content-Type at all
    ] {
        let answer = broker
            .http_send(
                "POST",
                "/topics/news/messages",
                Some((content_type, body.clone())),
            )
            .await;
        answer.assert_error(415, "unsupported_media_type");
    }
    assert_eq!(
        client.topics().await.expect("topics"),
        before,
        "nothing stored"
    );
    // JSON with a charset parameter is JSON.
    broker
        .http_send(
            "POST",
            "/topics/news/messages",
            Some(("application/json; charset=utf-8", body)),
        )
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_cursor_past_what_the_broker_holds_of_any_origin_is_refused() {
    let (broker, client) = broker_with_subscriber().await;
    client.publish(T, P1, "m1").await.expect("publish");
    let path = format!("/subscribers/{S1}/ack");
    // Another origin, of which this broker holds nothing: acknowledged up
    // to the largest seq, it would silence that origin for S1 for good.
    for positions in [
        json!([[T, "127.0.0.1:1", 9_223_372_036_854_775_807_u64]]),
        json!([[T, "127.0.0.1:1", 1]]),
    ] {
        let cursor = forged_cursor(S1, positions.clone());
        broker
            .http_post(&path, json!({ "cursor": cursor }))
            .await
            .assert_error(400, "bad_request");
    }
    let events = broker.event_log();
    assert!(
        events.iter().all(|(.., what)| !what.starts_with("ack ")),
        "an acknowledgement was recorded: {events:?}"
    );
    assert_eq!(payloads(&pull_now(&client, S1, T).await), ["m1"]);
}

#[tokio::test]
async fn topics_are_listed_a_page_at_a_time_in_name_order() {
    let (broker, client) = start_with_topic(&[], P1, "e").await;
    for name in ["c", "a", "d", "b"] {
        topic_of(&client, P1, name).await;
    }
    let names = |answer: Answer| -> Vec<String> {
        answer.assert_status(200);
        let topics = answer.json();
        let topics = topics.as_array().expect("an array");
        topics
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let all = names(broker.http_get("/topics").await);
    assert_eq!(
        all,
        ["a", "b", "c", "d", "e"],
        "v1: every topic, in name order"
    );
    assert_eq!(names(broker.http_get("/topics?limit=2").await), ["a", "b"]);
    assert_eq!(
        names(broker.http_get("/topics?limit=2&after=b").await),
        ["c", "d"]
    );
    assert_eq!(names(broker.http_get("/topics?after=d").await), ["e"]);
    assert!(names(broker.http_get("/topics?after=e").await).is_empty());
    assert_eq!(
        names(broker.http_get("/topics?limit=5000").await).len(),
        5,
        "capped, not refused"
    );
    for bad in ["/topics?limit=0", "/topics?limit=-1", "/topics?limit=x"] {
        broker.http_get(bad).await.assert_error(400, "bad_request");
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_thirty_seconds_is_refused_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (broker, client) = start_with_topic(&[], P1, T).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .expect("connect");
    let head = "POST /publishers HTTP/1.1\r\nHost: rumor\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"id\": ";
    stream.write_all(head.as_bytes()).await.expect("send");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(45), async {
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 45 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(29), "answered after {took:?}");
    // The broker goes on.
    client.health().await.expect("healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_write_queue_are_refused_with_503_and_retry_after() {
    let (broker, client) = start_with_topic(&["--max-write-queue", "1"], P1, T).await;
    let url = format!("{}/topics/{T}/messages", broker.url());
    client::connect::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..64 {
        let payloads: Vec<String> = (0..500).map(|i| format!("w{n}-{i}")).collect();
        let request = http
            .post(&url)
            .json(&json!({ "publisher": P1, "payloads": payloads }));
        writes.spawn(async move {
            let response = request.send().await.expect("an answer");
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap_or_default().to_string());
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON body");
            (status, retry_after, body)
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(done) = writes.join_next().await {
        let (status, retry_after, body) = done.expect("task");
        match status {
            201 => stored += 1,
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "64 batches at once never filled a queue of one"
    );
    assert!(stored > 0, "the writer took none");
    assert_eq!(
        message_count(&client, T).await,
        stored * 500,
        "only the taken ones"
    );
    client.health().await.expect("still healthy");
}

/// Sends raw bytes on a new connection and reads until the broker closes
/// it (or 15 s pass); returns what came back.
async fn raw_exchange(broker: &Broker, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .expect("connect");
    // The broker may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_http_layer_itself_have_the_json_error_body() {
    let broker = Broker::start().await;
    let too_long_header = format!(
        "GET /health HTTP/1.1\r\nHost: rumor\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let cases: [(&str, Vec<u8>, &str, &str); 4] = [
        (
            "a malformed request line",
            b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
            "400",
            "bad_request",
        ),
        (
            "a malformed header",
            b"GET /health HTTP/1.1\r\nHost rumor\r\n\r\n".to_vec(),
            "400",
            "bad_request",
        ),
        (
            "a header too large",
            too_long_header.into_bytes(),
            "431",
            "header_too_large",
        ),
        // The head never completes: actix-http's head timeout.
        (
            "a head that never ends",
            b"GET /health HTTP/1.1\r\nHost: ru".to_vec(),
            "408",
            "request_timeout",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = raw_exchange(&broker, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {answer:?}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {answer:?}"
        );
        let body: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {answer:?}"));
        assert_eq!(body["error"]["code"], code, "{what}");
        assert!(body["error"]["message"].is_string(), "{what}");
    }
    // The broker goes on.
    broker.client().health().await.expect("healthy");
}
