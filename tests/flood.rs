//! API.md §5.5 under a flood: 64 maximum-size request bodies arriving at
//! once and held half sent, then 10,000 idle connections opened and held.
//! The broker's memory stays within its bound for buffered bodies, the
//! bodies past it are refused with `503 overloaded`, and `/health` and a
//! publish still answer.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default largest body: 8 × the default 1 MiB payload, at least 16 MiB.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The default pool for large bodies (`Config::max_buffered_body_bytes`).
const LARGE_POOL: u64 = 256 * 1024 * 1024;
const BODIES: usize = 64;
const CONNECTIONS: usize = 10_000;

/// Raises this process's open-file limit (the broker it spawns inherits
/// it); returns the soft limit.
fn raise_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let raised = libc::rlimit {
            rlim_cur: wanted.max(limit.rlim_cur),
            rlim_max: wanted.max(limit.rlim_max),
        };
        // Raising the hard limit needs root; else up to the hard limit.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// The process's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Sends the head of a maximum-size publish and half its body; returns the
/// connection and, if the broker answered within a moment, its status line.
async fn half_sent_body(port: u16) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect((HOST, port)).await.expect("connect");
    let head = format!(
        "POST /topics/t/messages HTTP/1.1\r\nHost: rumor\r\nContent-Type: application/json\r\n\
         Content-Length: {MAX_BODY}\r\n\r\n{{\"publisher\": \"p\", \"payload\": \""
    );
    let half = vec![b'a'; MAX_BODY / 2];
    // A refused body may be cut off by the broker mid-write.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&half).await;
    let mut answer = vec![0u8; 512];
    let status = match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer)).await
    {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&answer[..n]).into_owned()),
        _ => None,
    };
    (stream, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bodies_and_connections_leaves_the_broker_answering_within_bounds() {
    // Each end (this process, the broker) holds one socket per connection.
    let files = raise_open_files(2 * CONNECTIONS as u64);
    assert!(
        files > CONNECTIONS as u64 + 1_000,
        "only {files} open files allowed; the flood needs about {}",
        CONNECTIONS + 1_000
    );
    let (broker, client) = start_with_topic(&[], "p", "t").await;
    let before = rss(broker.pid());

    let mut bodies = tokio::task::JoinSet::new();
    for _ in 0..BODIES {
        bodies.spawn(half_sent_body(broker.port));
    }
    let mut held = Vec::new();
    let mut refused = 0;
    while let Some(sent) = bodies.join_next().await {
        let (stream, answer) = sent.expect("sender");
        if let Some(answer) = answer {
            assert!(
                answer.starts_with("HTTP/1.1 503") && answer.contains("overloaded"),
                "{answer}"
            );
            refused += 1;
        }
        held.push(stream);
    }
    // Half of 64 maximum bodies is 512 MiB: more than the pool takes.
    let taken = (BODIES - refused) as u64 * (MAX_BODY as u64 / 2);
    assert!(refused > 0, "no body was refused");
    assert!(taken <= LARGE_POOL, "{taken} bytes taken");

    let mut idle = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        idle.push(
            TcpStream::connect((HOST, broker.port))
                .await
                .expect("connect"),
        );
    }
    let answered = tokio::time::timeout(Duration::from_secs(5), client.health()).await;
    assert!(matches!(answered, Ok(Ok(_))), "/health: {answered:?}");
    let published = tokio::time::timeout(
        Duration::from_secs(5),
        client.publish("t", "p", "still here"),
    )
    .await;
    assert!(matches!(published, Ok(Ok(_))), "publish: {published:?}");
    let during = rss(broker.pid());
    // The pool, plus what 10,000 connections and the runtime cost.
    let bound = before + LARGE_POOL + 256 * 1024 * 1024;
    eprintln!(
        "RSS {} MiB before, {} MiB with {taken} body bytes held, {refused} bodies refused and {CONNECTIONS} idle connections",
        before >> 20,
        during >> 20
    );
    assert!(during < bound, "RSS {during} over {bound}");

    drop(idle);
    drop(held);
    client
        .publish("t", "p", "after")
        .await
        .expect("publish after the flood");
    assert_eq!(broker.stored_payloads("t"), ["still here", "after"]);
}
