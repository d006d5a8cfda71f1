//! Retention (API.md §3): acknowledged-by-all messages go, unacknowledged
//! ones stay whatever their age, messages without subscribers expire.

mod support;

use std::time::{Duration, Instant};

use client::wire::{Pulled, StartFrom};
use client::Client;
use support::{at_once, eventually, payloads, start_with_topic, subscribed, Broker};

const P: &str = "pub-1";
const T: &str = "news";
/// How long retention may take to act once it is due.
const LIMIT: Duration = Duration::from_secs(10);

/// Starts a broker with `--retention <retention>` where `P` created topic
/// `T` and each of `subscribers` subscribes to it from the earliest message;
/// returns the broker and a client of it.
async fn start(retention: &str, subscribers: &[&str]) -> (Broker, Client) {
    let (broker, client) = start_with_topic(&["--retention", retention], P, T).await;
    for sid in subscribers {
        subscribed(&client, sid, T, StartFrom::Earliest).await;
    }
    (broker, client)
}

/// What `sid` is given now on `T` (up to `max` messages), without waiting.
async fn pull_now(client: &Client, sid: &str, max: u32) -> Pulled {
    let query = at_once(Some(T), Some(max));
    client.pull(sid, &query).await.expect("pull")
}

/// Stored payloads of `topic`, sorted.
fn stored(broker: &Broker, topic: &str) -> Vec<String> {
    let mut payloads = broker.stored_payloads(topic);
    payloads.sort();
    payloads
}

/// Waits (up to `LIMIT`) until the payloads stored for `topic`, sorted, are
/// `expected`; `what` names that in the failure message.
async fn until_stored(broker: &Broker, topic: &str, expected: &[&str], what: &str) {
    eventually(LIMIT, what, || {
        let left = stored(broker, topic);
        async move { left == expected }
    })
    .await;
}

#[tokio::test]
async fn message_acknowledged_by_every_subscriber_is_deleted() {
    // A long retention: only acknowledgements can delete here.
    let (broker, client) = start("1h", &["s1", "s2"]).await;
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
    until_stored(&broker, T, &["m2"], "m1 deleted from broker.db").await;
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
    until_stored(&broker, T, &[], "m2 deleted from broker.db").await;
    assert_eq!(client.topic(T).await.expect("topic").messages, 0);
}

#[tokio::test]
async fn unacknowledged_message_outlives_the_retention_age() {
    let (broker, client) = start("2s", &["s1", "s2"]).await;
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
    until_stored(&broker, "unread", &[], "the witness expired").await;

    assert_eq!(
        stored(&broker, T),
        ["kept"],
        "a message s2 has not acknowledged was deleted"
    );
    assert_eq!(client.topic(T).await.expect("topic").messages, 1);
    let s2 = pull_now(&client, "s2", 10).await;
    assert_eq!(payloads(&s2), ["kept"], "s2 skipped a message");

    client.ack("s2", &s2.cursor).await.expect("ack");
    until_stored(&broker, T, &[], "kept deleted once s2 acknowledged").await;
}

#[tokio::test]
async fn message_without_subscribers_expires_after_the_retention_age() {
    let (broker, client) = start("2s", &[]).await;

    let published_at = Instant::now();
    client
        .publish_batch(T, P, vec!["a".into(), "b".into()])
        .await
        .expect("publish");
    assert_eq!(stored(&broker, T), ["a", "b"]);
    until_stored(&broker, T, &[], "messages without subscribers expired").await;
    let age = published_at.elapsed();
    assert!(
        age >= Duration::from_millis(1900),
        "deleted {age:?} after publishing, before the 2 s retention"
    );
    assert_eq!(client.topic(T).await.expect("topic").messages, 0);

    // A subscriber from earliest finds nothing left, and the topic lives on.
    subscribed(&client, "late", T, StartFrom::Earliest).await;
    assert!(pull_now(&client, "late", 10).await.messages.is_empty());
    client.publish(T, P, "c").await.expect("publish");
    assert_eq!(payloads(&pull_now(&client, "late", 10).await), ["c"]);
}
