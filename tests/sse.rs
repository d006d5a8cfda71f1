//! Server-Sent Events (API.md §7): `GET /subscribers/{sid}/stream` starts
//! with the subscriber's unacknowledged messages, follows with new ones in
//! pull order, gives each once per stream, leases on shared subscriptions,
//! acknowledges with `auto_ack`, and a reconnect loses nothing.

mod support;

use std::time::Duration;

use client::http::EventStream;
use client::wire::{Message, StartFrom};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The next `n` messages of `stream`, within `WAIT`.
async fn next(stream: &mut EventStream, n: usize) -> Vec<Message> {
    let mut got = Vec::new();
    while got.len() < n {
        let message = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {got:?} within {WAIT:?}"))
            .unwrap()
            .expect("the stream goes on");
        got.push(message);
    }
    got
}

fn payloads_of(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.payload.as_str()).collect()
}

/// Nothing more arrives on `stream` for a while.
async fn quiet(stream: &mut EventStream) {
    let more = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
    assert!(more.is_err(), "unexpected {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_starts_with_the_unacknowledged_and_a_reconnect_loses_nothing() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    client
        .publish_batch("t", "p", vec!["m1".into(), "m2".into()])
        .await
        .unwrap();
    let raw = reqwest::get(format!("{}/subscribers/s/stream?topic=t", broker.url()))
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "text/event-stream");
    drop(raw);

    let mut stream = client.stream("s", Some("t"), false).await.unwrap();
    let first = next(&mut stream, 2).await;
    assert_eq!(payloads_of(&first), ["m1", "m2"]);
    client.publish("t", "p", "m3").await.unwrap();
    assert_eq!(payloads_of(&next(&mut stream, 1).await), ["m3"]);
    // Each message once per stream, although none is acknowledged.
    quiet(&mut stream).await;
    drop(stream);

    // A new stream starts again with all that is unacknowledged.
    let mut again = client.stream("s", Some("t"), false).await.unwrap();
    let all = next(&mut again, 3).await;
    assert_eq!(payloads_of(&all), ["m1", "m2", "m3"]);
    let ids: Vec<String> = all.iter().map(|m| m.id.clone()).collect();
    client.ack_ids("s", &ids).await.unwrap();
    drop(again);
    let mut after = client.stream("s", Some("t"), false).await.unwrap();
    client.publish("t", "p", "m4").await.unwrap();
    assert_eq!(payloads_of(&next(&mut after, 1).await), ["m4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ack_acknowledges_what_a_stream_gave() {
    let (_broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    let mut stream = client.stream("s", None, true).await.unwrap();
    client
        .publish_batch("t", "p", vec!["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(payloads_of(&next(&mut stream, 2).await), ["a", "b"]);
    client.publish("t", "p", "c").await.unwrap();
    assert_eq!(payloads_of(&next(&mut stream, 1).await), ["c"]);
    // The first batch was acknowledged once the stream went on past it.
    eventually(WAIT, "a and b are acknowledged", || async {
        let left = client.pull("s", &at_once(Some("t"), None)).await.unwrap();
        !payloads(&left).iter().any(|p| *p == "a" || *p == "b")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_a_shared_subscriber_split_its_messages() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed_shared(&broker, "w", "t", json!({"ack_wait_ms": 60000})).await;
    let mut one = client.stream("w", Some("t"), false).await.unwrap();
    let mut two = client.stream("w", Some("t"), false).await.unwrap();
    let sent: Vec<String> = (1..=20).map(|n| format!("m{n}")).collect();
    for payload in &sent {
        client.publish("t", "p", payload).await.unwrap();
    }
    // Every message goes to one of the two streams, none to both.
    let mut got: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < sent.len() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            Ok(Some(m)) = one.next() => got.push(m.payload),
            Ok(Some(m)) = two.next() => got.push(m.payload),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    got.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(got, expected);
    quiet(&mut one).await;
    quiet(&mut two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_an_unknown_subscriber_or_topic_is_refused() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    broker
        .http_get("/subscribers/nobody/stream")
        .await
        .assert_error(404, "subscriber_not_found");
    client.register_subscriber("s").await.unwrap();
    broker
        .http_get("/subscribers/s/stream?topic=t")
        .await
        .assert_error(404, "not_subscribed");
    broker
        .http_get("/topics/nope/stream")
        .await
        .assert_error(404, "topic_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_back_gives_an_open_stream_the_messages_again() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "keeper", "t", StartFrom::Earliest).await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    let mut stream = client.stream("s", Some("t"), true).await.unwrap();
    client
        .publish_batch("t", "p", vec!["m1".into(), "m2".into()])
        .await
        .unwrap();
    assert_eq!(payloads_of(&next(&mut stream, 2).await), ["m1", "m2"]);
    client.publish("t", "p", "m3").await.unwrap();
    assert_eq!(payloads_of(&next(&mut stream, 1).await), ["m3"]);
    broker
        .http_post(
            "/subscribers/s/subscriptions/t/seek",
            json!({"to": "earliest"}),
        )
        .await
        .assert_status(204);
    assert_eq!(payloads_of(&next(&mut stream, 3).await), ["m1", "m2", "m3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_takes_one_of_its_subscribers_sixteen_places() {
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    subscribed(&client, "s", "t", StartFrom::Earliest).await;
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(client.stream("s", Some("t"), false).await.unwrap());
    }
    broker
        .http_get("/subscribers/s/stream?topic=t")
        .await
        .assert_error(429, "too_many_requests");
    drop(streams.pop());
    eventually(WAIT, "a place frees up", || async {
        let answer = reqwest::get(format!("{}/subscribers/s/stream?topic=t", broker.url()))
            .await
            .unwrap();
        answer.status() == 200
    })
    .await;
}
