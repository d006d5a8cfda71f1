//! Leader mode (API.md §4): the leader sequences every write, a majority
//! acknowledges it, and without a majority writes fail with `no_quorum`.

mod support;

use std::time::Duration;

use client::wire::{Published, StartFrom};
use client::Client;
use support::{
    at_once, eventually, eventually_ok, metric, read_all, spawn_piped, subscribed, topic_of,
    Answer, ChildGuard, Cluster, HOST,
};
use tokio::task::JoinSet;

const P1: &str = "pub-1";
const T: &str = "news";
/// Time for the cluster to agree on a leader, or to notice a failure.
const SETTLE: Duration = Duration::from_secs(10);

/// A three-broker cluster in leader mode with topic `T`, known everywhere.
async fn leader_cluster() -> Cluster {
    let cluster = Cluster::start(3, &["--mode", "leader"]).await;
    cluster.agreed_leader(SETTLE).await;
    topic_of(&cluster.client(0), P1, T).await;
    cluster
}

/// Every message id a fresh subscriber `sid` reads on `client`, oldest first.
async fn delivered_ids(client: &Client, sid: &str) -> Result<Vec<String>, String> {
    let pulled = client
        .pull(sid, &at_once(Some(T), Some(1000)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(pulled.messages.into_iter().map(|m| m.id).collect())
}

/// Waits until brokers 1 and 2 deliver to "reader" exactly `order`.
async fn same_order_everywhere(cluster: &Cluster, order: &[String]) {
    for i in 1..3 {
        let client = cluster.client(i);
        eventually(SETTLE, "the same order on every broker", || async {
            delivered_ids(&client, "reader").await.ok().as_deref() == Some(order)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_broker_come_out_in_one_order_everywhere() {
    let cluster = leader_cluster().await;
    let leader = cluster.id(2);
    for i in 0..3 {
        let info = cluster.cluster_info(i).await.expect("cluster view");
        assert_eq!(info.mode, "leader");
    }
    subscribed(&cluster.client(0), "reader", T, StartFrom::Earliest).await;

    let mut writers = JoinSet::new();
    for i in 0..3 {
        let client = cluster.client(i);
        writers.spawn(async move {
            let mut published: Vec<Published> = Vec::new();
            for n in 0..15 {
                let payload = format!("via-{i}-{n}");
                published.push(client.publish(T, P1, &payload).await.expect("publish"));
            }
            published
        });
    }
    let mut acknowledged = Vec::new();
    while let Some(published) = writers.join_next().await {
        acknowledged.extend(published.expect("writer"));
    }
    assert_eq!(acknowledged.len(), 45);
    assert!(
        acknowledged.iter().all(|p| p.origin == leader),
        "every write is sequenced by the leader {leader}"
    );

    let order = eventually_ok(SETTLE, "broker 0 delivers all 45", || async {
        let ids = delivered_ids(&cluster.client(0), "reader").await?;
        if ids.len() == 45 {
            Ok(ids)
        } else {
            Err(format!("{} so far", ids.len()))
        }
    })
    .await;
    same_order_everywhere(&cluster, &order).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_fail_fast_and_resume_with_it() {
    let mut cluster = leader_cluster().await;
    let survivor = cluster.client(0);
    let before = survivor.publish(T, P1, "before").await.expect("publish");

    cluster.kill(2);
    cluster.kill(1);
    let refused = eventually_ok(SETTLE, "publishing is refused", || async {
        match survivor.publish(T, P1, "alone").await {
            Err(error) if error.code() == Some("no_quorum") => Ok(error),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(refused.to_string().contains("503"), "{refused}");

    cluster.restart(1).await;
    let after = eventually_ok(SETTLE, "publishing works again", || async {
        survivor
            .publish(T, P1, "after")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    // Nothing acknowledged is lost: both are readable on the restarted broker.
    subscribed(&cluster.client(1), "late", T, StartFrom::Earliest).await;
    let restarted = cluster.client(1);
    eventually(
        SETTLE,
        "acknowledged writes on the restarted broker",
        || async {
            let ids = delivered_ids(&restarted, "late").await.unwrap_or_default();
            ids.contains(&before.id) && ids.contains(&after.id)
        },
    )
    .await;
}

/// API.md §1: the subscriber, like the publisher, takes `503 no_quorum`
/// as "not now": it asks again until a majority is back, then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_asks_again_through_no_quorum_and_goes_on_with_a_majority() {
    let mut cluster = leader_cluster().await;
    cluster.kill(2);
    cluster.kill(1);
    let port = cluster.broker(0).port.to_string();
    let args = [
        "--host", HOST, "--port", &port, "--id", "S", "--topic", T, "--from", "earliest",
        "--count", "1",
    ];
    let mut subscriber = ChildGuard(spawn_piped(env!("CARGO_BIN_EXE_subscriber"), &args));
    let stdout = read_all(subscriber.0.stdout.take().unwrap());
    let stderr = read_all(subscriber.0.stderr.take().unwrap());
    let survivor = cluster.client(0);
    // Its registration is refused without a majority, and it asks again.
    let refused =
        "rumor_http_request_duration_seconds_count{route=\"/subscribers\",status=\"503\"}";
    eventually(SETTLE, "the subscriber asks again after 503", || async {
        let text = survivor.metrics().await.unwrap_or_default();
        metric(&text, refused).unwrap_or(0.0) >= 2.0
    })
    .await;
    cluster.restart(1).await;
    eventually_ok(SETTLE, "publishing works again", || async {
        survivor
            .publish(T, P1, "hello")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let status = subscriber.wait(SETTLE);
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(status.success(), "subscriber: {status}: {stderr}");
    assert_eq!(String::from_utf8_lossy(&stdout.join().unwrap()), "hello\n");
}

/// `PUT /cluster/mode` on broker `i`.
async fn set_mode(cluster: &Cluster, i: usize, mode: &str) -> Answer {
    let body = format!(r#"{{"mode": "{mode}"}}"#).into_bytes();
    cluster
        .broker(i)
        .http_send("PUT", "/cluster/mode", Some(("application/json", body)))
        .await
}

/// Waits until every broker of `cluster` reports `mode`.
async fn mode_everywhere(cluster: &Cluster, mode: &str) {
    for i in cluster.live() {
        eventually(SETTLE, "every broker reports the new mode", || async {
            cluster
                .cluster_info(i)
                .await
                .map(|c| c.mode == mode)
                .unwrap_or(false)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_switches_for_the_whole_cluster_at_run_time() {
    let mut cluster = Cluster::start(3, &[]).await;
    let (leader, _) = cluster.agreed_leader(SETTLE).await;
    let first = cluster.client(0);
    topic_of(&first, P1, T).await;

    let answer = set_mode(&cluster, 0, "leader").await;
    answer.assert_status(200);
    mode_everywhere(&cluster, "leader").await;
    let ordered = first.publish(T, P1, "ordered").await.expect("publish");
    assert_eq!(
        ordered.origin, leader,
        "the leader sequences in leader mode"
    );

    set_mode(&cluster, 1, "gossip").await.assert_status(200);
    mode_everywhere(&cluster, "gossip").await;
    let local = first.publish(T, P1, "local").await.expect("publish");
    assert_eq!(
        local.origin,
        cluster.id(0),
        "any broker sequences in gossip mode"
    );

    set_mode(&cluster, 0, "raft")
        .await
        .assert_error(400, "bad_request");

    // The mode survives a restart (the broker was started with the default,
    // gossip).
    set_mode(&cluster, 2, "leader").await.assert_status(200);
    mode_everywhere(&cluster, "leader").await;
    cluster.kill(0);
    cluster.restart(0).await;
    let info = cluster.cluster_info(0).await.expect("cluster view");
    assert_eq!(info.mode, "leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_cannot_acknowledge_after_the_others_moved_on() {
    let mut cluster = leader_cluster().await;
    subscribed(&cluster.client(0), "reader", T, StartFrom::Earliest).await;
    let old_leader = cluster.id(2);
    cluster.pause(2);
    let (new_leader, _) = cluster
        .agreed_leader_where(SETTLE, "a new leader among the others", |leader, _| {
            leader != old_leader
        })
        .await;
    let moved_on = cluster
        .client(0)
        .publish(T, P1, "moved on")
        .await
        .expect("publish");
    assert_eq!(moved_on.origin, new_leader);

    // Right after it resumes, the old leader refuses (no quorum), hands the
    // write to the current leader, or, being the greatest id, leads again in
    // a newer term: whatever it acknowledges is held by every broker, in
    // the same order everywhere.
    cluster.resume(2);
    let mut acknowledged = vec![moved_on.id];
    match cluster.client(2).publish(T, P1, "after resume").await {
        Ok(published) => acknowledged.push(published.id),
        Err(error) => assert_eq!(error.code(), Some("no_quorum"), "{error}"),
    }
    cluster.agreed_leader(SETTLE).await;
    let order = eventually_ok(
        SETTLE,
        "broker 0 delivers what was acknowledged",
        || async {
            let ids = delivered_ids(&cluster.client(0), "reader").await?;
            if acknowledged.iter().all(|id| ids.contains(id)) {
                Ok(ids)
            } else {
                Err(format!("{ids:?} lacks some of {acknowledged:?}"))
            }
        },
    )
    .await;
    same_order_everywhere(&cluster, &order).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_to_a_leader_that_stops_answering_fails_within_its_deadline() {
    let mut cluster = leader_cluster().await;
    let follower = cluster.client(0);
    follower.publish(T, P1, "before").await.expect("publish");
    cluster.pause(2);
    let started = std::time::Instant::now();
    let answer = follower.publish(T, P1, "to a frozen leader").await;
    let took = started.elapsed();
    let error = answer.expect_err("no leader can acknowledge it");
    assert_eq!(error.code(), Some("no_quorum"), "{error}");
    // API.md §8: within about 3 s of losing the majority, also forwarded.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    cluster.resume(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_before_leader_mode_are_delivered_first_after_the_switch() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.agreed_leader(SETTLE).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    subscribed(&c0, "reader", T, StartFrom::Earliest).await;
    // Gossip mode: each broker sequences its own.
    let mut before = vec![c0.publish(T, P1, "gossip-0").await.expect("publish").id];
    let on_1 = eventually_ok(SETTLE, "broker 1 takes a publish", || async {
        c1.publish(T, P1, "gossip-1")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    before.push(on_1.id);

    set_mode(&cluster, 0, "leader").await.assert_status(200);
    mode_everywhere(&cluster, "leader").await;
    let after = eventually_ok(SETTLE, "a publish in leader mode", || async {
        c0.publish(T, P1, "leader").await.map_err(|e| e.to_string())
    })
    .await;
    for i in 0..3 {
        let client = cluster.client(i);
        let ids = eventually_ok(SETTLE, "every message delivered", || async {
            let ids = delivered_ids(&client, "reader").await?;
            if ids.len() == 3 {
                Ok(ids)
            } else {
                Err(format!("broker {i} delivers {ids:?}"))
            }
        })
        .await;
        assert_eq!(
            ids[2], after.id,
            "broker {i}: the gossip-mode messages come first"
        );
        assert!(before.iter().all(|id| ids.contains(id)), "{ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_does_not_deliver_again_what_its_auto_acknowledged_pull_gave() {
    // Of five, a majority without broker 0 is likely each round.
    let cluster = Cluster::start(5, &["--mode", "leader"]).await;
    cluster.agreed_leader(SETTLE).await;
    let leader = cluster.client(4);
    topic_of(&leader, P1, T).await;
    let follower = cluster.client(0);
    subscribed(&follower, "worker", T, StartFrom::Latest).await;
    let query = client::wire::PullQuery {
        topic: Some(T.to_string()),
        max: None,
        wait_ms: Some(5_000),
        auto_ack: Some(true),
    };
    // The acknowledgement goes through the leader, and a majority without
    // this follower may take it: the next pull here must still pass over it.
    for n in 0..100 {
        let payload = format!("m-{n}");
        leader.publish(T, P1, &payload).await.expect("publish");
        let pulled = follower.pull("worker", &query).await.expect("pull");
        let payloads: Vec<&str> = pulled.messages.iter().map(|m| m.payload.as_str()).collect();
        assert_eq!(payloads, [payload.as_str()], "round {n}");
    }
}
