//! Retention (API.md §3): acknowledged-by-all messages go, unacknowledged
//! ones stay whatever their age, messages without subscribers expire.

mod support;

use std::time::{Duration, Instant};

use client::wire::{PullQuery, Pulled, StartFrom};
use client::Client;
use support::{eventually, Broker};

const P: &str = "pub-1";
const T: &str = "news";
/// How long retention may take to act once it is due.
const LIMIT: Duration = Duration::from_secs(10);

async fn setup(client: &Client, subscribers: &[&str]) {
    client
        .register_publisher(P)
        .await
        .expect("register publisher");
    client.create_topic(T, P).await.expect("create topic");
    for sid in subscribers {
        client.register_subscriber(sid).await.expect("register");
        client
            .subscribe(sid, T, StartFrom::Earliest)
            .await
            .expect("subscribe");
    }
}

fn at_once(topic: &str, max: u32) -> PullQuery {
    PullQuery {
        topic: Some(topic.to_string()),
        max: Some(max),
        wait_ms: Some(0),
        auto_ack: None,
    }
}

async fn pull_now(client: &Client, sid: &str, max: u32) -> Pulled {
    client.pull(sid, &at_once(T, max)).await.expect("pull")
}

fn payloads(pulled: &Pulled) -> Vec<&str> {
    pulled.messages.iter().map(|m| m.payload.as_str()).collect()
}

/// Stored payloads of `topic`, sorted.
fn stored(broker: &Broker, topic: &str) -> Vec<String> {
    let mut payloads = broker.stored_payloads(topic);
    payloads.sort();
    payloads
}

#[tokio::test]
async fn message_acknowledged_by_every_subscriber_is_deleted() {
    // A long retention: only acknowledgements can delete here.
    let broker = Broker::start_with(&["--retention", "1h"]).await;
    let client = broker.client();
    setup(&client, &["s1", "s2"]).await;
    client
        .publish_batch(T, P, vec!["m1".into(), "m2".into()])
        .await
        .expect("publish");

    let s1 = pull_now(&client, "s1", 10).await;
    assert_eq!(payloads(&s1), ["m1", "m2"]);
    client.ack("s1", &s1.cursor).await.expect("ack");
    let s2 = pull_now(&client, "s2", 1).await;
    assert_eq!(payloads(&s2), ["m1"]);
    client.ack("s2", &s2.cursor).await.expect("ack");

    // m1 is acknowledged by both, m2 by s1 only.
    eventually(LIMIT, "m1 deleted from broker.db", || {
        let left = stored(&broker, T);
        async move { left == ["m2"] }
    })
    .await;
    let c = client.clone();
    eventually(LIMIT, "the topic counts one message", || {
        let c = c.clone();
        async move { c.topic(T).await.expect("topic").messages == 1 }
    })
    .await;
    let rest = pull_now(&client, "s2", 10).await;
    assert_eq!(payloads(&rest), ["m2"], "s2 lost a message it did not ack");
    assert!(pull_now(&client, "s1", 10).await.messages.is_empty());

    client.ack("s2", &rest.cursor).await.expect("ack");
    eventually(LIMIT, "m2 deleted from broker.db", || {
        let left = stored(&broker, T);
        async move { left.is_empty() }
    })
    .await;
    assert_eq!(client.topic(T).await.expect("topic").messages, 0);
}

#[tokio::test]
async fn unacknowledged_message_outlives_the_retention_age() {
    let broker = Broker::start_with(&["--retention", "2s"]).await;
    let client = broker.client();
    setup(&client, &["s1", "s2"]).await;
    client.create_topic("unread", P).await.expect("topic");

    client.publish(T, P, "kept").await.expect("publish");
    let s1 = pull_now(&client, "s1", 10).await;
    assert_eq!(payloads(&s1), ["kept"]);
    client.ack("s1", &s1.cursor).await.expect("ack");
    // A witness published after "kept" in a topic nobody reads: once it
    // has expired, "kept" is older than the retention age as well.
    client
        .publish("unread", P, "witness")
        .await
        .expect("publish");
    eventually(LIMIT, "the witness expired", || {
        let left = stored(&broker, "unread");
        async move { left.is_empty() }
    })
    .await;

    assert_eq!(
        stored(&broker, T),
        ["kept"],
        "a message s2 has not acknowledged was deleted"
    );
    assert_eq!(client.topic(T).await.expect("topic").messages, 1);
    let s2 = pull_now(&client, "s2", 10).await;
    assert_eq!(payloads(&s2), ["kept"], "s2 skipped a message");

    client.ack("s2", &s2.cursor).await.expect("ack");
    eventually(LIMIT, "kept deleted once s2 acknowledged", || {
        let left = stored(&broker, T);
        async move { left.is_empty() }
    })
    .await;
}

#[tokio::test]
async fn message_without_subscribers_expires_after_the_retention_age() {
    let broker = Broker::start_with(&["--retention", "2s"]).await;
    let client = broker.client();
    setup(&client, &[]).await;

    let published_at = Instant::now();
    client
        .publish_batch(T, P, vec!["a".into(), "b".into()])
        .await
        .expect("publish");
    assert_eq!(stored(&broker, T), ["a", "b"]);
    eventually(LIMIT, "messages without subscribers expired", || {
        let left = stored(&broker, T);
        async move { left.is_empty() }
    })
    .await;
    let age = published_at.elapsed();
    assert!(
        age >= Duration::from_millis(1900),
        "deleted {age:?} after publishing, before the 2 s retention"
    );
    assert_eq!(client.topic(T).await.expect("topic").messages, 0);

    // A subscriber from earliest finds nothing left, and the topic lives on.
    client.register_subscriber("late").await.expect("register");
    client
        .subscribe("late", T, StartFrom::Earliest)
        .await
        .expect("subscribe");
    assert!(pull_now(&client, "late", 10).await.messages.is_empty());
    client.publish(T, P, "c").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, "late", 10).await), ["c"]);
}
