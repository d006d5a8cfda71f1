//! Reads, shared by the HTTP handlers (on pooled connections) and the
//! writer's checks (inside its transaction).

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use client::peer::{EncodedEvent, Epoch, EventId, Have};
use client::wire::{
    message_id, Headers, Message, SharedSettings, StartFrom, TopicInfo, TopicLimits,
};
use client::PeerAddr;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::error::StoreError;
use super::recent::RecentEvents;
use crate::epochs::{Epochs, Lead};
use crate::event::{Change, Event};
use crate::lock;

pub fn require_publisher(conn: &Connection, publisher: &str) -> Result<(), StoreError> {
    if publisher_exists(conn, publisher)? {
        Ok(())
    } else {
        Err(StoreError::PublisherNotFound(publisher.to_string()))
    }
}

pub fn require_subscriber(conn: &Connection, subscriber: &str) -> Result<(), StoreError> {
    if subscriber_exists(conn, subscriber)? {
        Ok(())
    } else {
        Err(StoreError::SubscriberNotFound(subscriber.to_string()))
    }
}

/// The first message of `origin` on `topic` after seq `after` and up to
/// `upto` that `subscriber` reads (stamped after its subscription's start)
/// and did not acknowledge by id, if any.
pub fn first_unacknowledged(
    conn: &Connection,
    (subscriber, topic, origin): (&str, &str, &str),
    after: u64,
    upto: u64,
) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(
        "SELECT m.seq FROM messages m
         JOIN subscriptions s ON s.subscriber = ?5 AND s.topic = m.topic
         WHERE m.topic = ?1 AND m.origin = ?2 AND m.seq > ?3 AND m.seq <= ?4
           AND (m.lamport, m.origin) > (s.start_lamport, s.start_origin)
           AND NOT EXISTS (SELECT 1 FROM acks a
                           WHERE a.subscriber = ?5 AND a.origin = m.origin AND a.seq = m.seq)
         ORDER BY m.seq LIMIT 1",
    )?
    .query_row(params![topic, origin, after, upto, subscriber], |row| {
        row.get(0)
    })
    .optional()
}

/// How many times `subscriber` has been given message `(origin, seq)` by
/// leases.
pub fn deliveries(
    conn: &Connection,
    subscriber: &str,
    (origin, seq): (&str, u64),
) -> rusqlite::Result<u32> {
    Ok(conn
        .prepare_cached(
            "SELECT deliveries FROM leases WHERE subscriber = ?1 AND origin = ?2 AND seq = ?3",
        )?
        .query_row(params![subscriber, origin, seq], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// A lease as stored.
pub struct Lease {
    pub topic: String,
    pub until_ms: i64,
    pub eligible_ms: i64,
    /// The epoch it was given out in.
    pub epoch: Epoch,
}

/// `subscriber`'s lease of message `(origin, seq)`, if it ever had one.
pub fn lease_of(
    conn: &Connection,
    subscriber: &str,
    (origin, seq): (&str, u64),
) -> rusqlite::Result<Option<Lease>> {
    conn.prepare_cached(
        "SELECT topic, until_ms, eligible_ms, epoch_lamport, epoch_origin FROM leases
         WHERE subscriber = ?1 AND origin = ?2 AND seq = ?3",
    )?
    .query_row(params![subscriber, origin, seq], |row| {
        Ok(Lease {
            topic: row.get(0)?,
            until_ms: row.get(1)?,
            eligible_ms: row.get(2)?,
            epoch: Epoch {
                lamport: row.get(3)?,
                origin: row.get(4)?,
            },
        })
    })
    .optional()
}

/// When the next of `subscriber`'s leases on `topics` that ends after
/// `now_ms` lets its message out again, if the message is still
/// unacknowledged.
pub fn next_eligible(
    conn: &Connection,
    subscriber: &str,
    topics: &[String],
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    let mut next: Option<i64> = None;
    let mut statement = conn.prepare_cached(
        "SELECT l.eligible_ms FROM leases l INDEXED BY leases_by_eligible
         WHERE l.subscriber = ?1 AND l.eligible_ms > ?3 AND l.topic = ?2
           AND NOT EXISTS (SELECT 1 FROM acks a
                           WHERE a.subscriber = l.subscriber AND a.origin = l.origin AND a.seq = l.seq)
           AND NOT EXISTS (SELECT 1 FROM positions p
                           WHERE p.subscriber = l.subscriber AND p.topic = l.topic
                             AND p.origin = l.origin AND p.seq >= l.seq)
         ORDER BY l.eligible_ms LIMIT 1",
    )?;
    for topic in topics {
        let eligible: Option<i64> = statement
            .query_row(params![subscriber, topic, now_ms], |row| row.get(0))
            .optional()?;
        next = match (next, eligible) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// The shared settings of `subscriber`'s live subscriptions among `topics`.
pub fn shared_topics(
    conn: &Connection,
    subscriber: &str,
    topics: &[String],
) -> Result<Vec<(String, SharedSettings)>, StoreError> {
    let mut shared = Vec::new();
    for topic in topics {
        if let Some(Some(settings)) = subscription_settings(conn, subscriber, topic)? {
            shared.push((topic.clone(), settings));
        }
    }
    Ok(shared)
}

/// The topic of the held message `(origin, seq)`, if this broker holds it.
pub fn topic_of_message(
    conn: &Connection,
    origin: &str,
    seq: u64,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT topic FROM messages WHERE origin = ?1 AND seq = ?2")?
        .query_row(params![origin, seq], |row| row.get(0))
        .optional()
}

/// Whether `subscriber` acknowledged message `(origin, seq)` of `topic`,
/// by a cursor or by its id.
pub fn is_acknowledged(
    conn: &Connection,
    subscriber: &str,
    topic: &str,
    (origin, seq): (&str, u64),
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM positions
                        WHERE subscriber = ?1 AND topic = ?2 AND origin = ?3 AND seq >= ?4)
             OR EXISTS (SELECT 1 FROM acks WHERE subscriber = ?1 AND origin = ?3 AND seq = ?4)",
    )?
    .query_row(params![subscriber, topic, origin, seq], |row| row.get(0))
}

/// The message `(topic, publisher, msg_id)` stored at or after `since_ms`
/// (`published_at_ms`), if any: `(origin, seq, lamport)` of the first.
pub fn stored_msg_id(
    conn: &Connection,
    (topic, publisher, msg_id, since_ms): (&str, &str, &str, i64),
) -> rusqlite::Result<Option<(String, u64, u64)>> {
    conn.prepare_cached(
        "SELECT origin, seq, lamport FROM msg_ids
         WHERE topic = ?1 AND publisher = ?2 AND msg_id = ?3 AND published_at_ms >= ?4
         ORDER BY lamport, origin LIMIT 1",
    )?
    .query_row(params![topic, publisher, msg_id, since_ms], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
    .optional()
}

/// A message with a client id, as the leader-mode check for repeats
/// needs it.
pub struct Keyed {
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
    pub published_at_ms: i64,
    /// `(topic, publisher, msg_id)`.
    pub key: (String, String, String),
}

impl Keyed {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Keyed> {
        Ok(Keyed {
            origin: row.get(0)?,
            seq: row.get(1)?,
            lamport: row.get(2)?,
            published_at_ms: row.get(3)?,
            key: (row.get(4)?, row.get(5)?, row.get(6)?),
        })
    }
}

/// The columns of `Keyed`, in `messages` and in `msg_ids`.
const KEYED: &str = "origin, seq, lamport, published_at_ms, topic, publisher, msg_id";

/// `origin`'s held messages with a client id, seq in `(after, upto]`.
pub fn keyed_messages(
    conn: &Connection,
    (origin, after, upto): (&str, u64, u64),
) -> rusqlite::Result<Vec<Keyed>> {
    conn.prepare_cached(&format!(
        "SELECT {KEYED} FROM messages
         WHERE origin = ?1 AND seq > ?2 AND seq <= ?3 AND msg_id IS NOT NULL"
    ))?
    .query_map(params![origin, after, upto], Keyed::from_row)?
    .collect()
}

/// Every message with the client id `key` stored within the dedup window
/// (also those retention deleted since).
pub fn copies(conn: &Connection, key: &(String, String, String)) -> rusqlite::Result<Vec<Keyed>> {
    let (topic, publisher, msg_id) = key;
    conn.prepare_cached(&format!(
        "SELECT {KEYED} FROM msg_ids WHERE topic = ?1 AND publisher = ?2 AND msg_id = ?3"
    ))?
    .query_map(params![topic, publisher, msg_id], Keyed::from_row)?
    .collect()
}

/// The creator of the existing `topic`, or `topic_not_found`.
pub fn require_topic(conn: &Connection, topic: &str) -> Result<String, StoreError> {
    topic_owner(conn, topic)?.ok_or_else(|| StoreError::TopicNotFound(topic.to_string()))
}

/// The live subscription's shared settings (`None` for a v1 one), or
/// `not_subscribed`.
pub fn require_subscription(
    conn: &Connection,
    subscriber: &str,
    topic: &str,
) -> Result<Option<SharedSettings>, StoreError> {
    subscription_settings(conn, subscriber, topic)?.ok_or_else(|| StoreError::NotSubscribed {
        subscriber: subscriber.to_string(),
        topic: topic.to_string(),
    })
}

pub fn publisher_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    exists(conn, "SELECT 1 FROM publishers WHERE id = ?1", id)
}

pub fn subscriber_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    exists(conn, "SELECT 1 FROM subscribers WHERE id = ?1", id)
}

fn exists(conn: &Connection, sql: &str, key: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(sql)?.exists([key])
}

/// The stamp of the creation of `topic`'s live incarnation, if it exists.
pub fn topic_creation(conn: &Connection, topic: &str) -> rusqlite::Result<Option<(u64, String)>> {
    conn.prepare_cached(
        "SELECT created_lamport, created_origin FROM topics
         WHERE name = ?1 AND created_by IS NOT NULL",
    )?
    .query_row([topic], |row| Ok((row.get(0)?, row.get(1)?)))
    .optional()
}

/// The publisher that created the live incarnation of `topic`, if it exists.
pub fn topic_owner(conn: &Connection, topic: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT created_by FROM topics WHERE name = ?1 AND created_by IS NOT NULL")?
        .query_row([topic], |row| row.get(0))
        .optional()
}

pub fn is_subscribed(conn: &Connection, subscriber: &str, topic: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM subscriptions WHERE subscriber = ?1 AND topic = ?2 AND live = 1",
    )?
    .exists([subscriber, topic])
}

/// A live subscription's settings: `Some(None)` for a v1 one, `None`
/// without a live subscription.
pub fn subscription_settings(
    conn: &Connection,
    subscriber: &str,
    topic: &str,
) -> Result<Option<Option<SharedSettings>>, StoreError> {
    let shared: Option<Option<String>> = conn
        .prepare_cached(
            "SELECT shared FROM subscriptions WHERE subscriber = ?1 AND topic = ?2 AND live = 1",
        )?
        .query_row([subscriber, topic], |row| row.get(0))
        .optional()?;
    shared
        .map(|shared| {
            shared
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| StoreError::Failed(format!("stored shared settings: {e}")))
        })
        .transpose()
}

/// The topics `subscriber` reads, live subscriptions to existing topics only.
pub fn subscribed_topics(conn: &Connection, subscriber: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT s.topic FROM subscriptions s JOIN topics t ON t.name = s.topic
         WHERE s.subscriber = ?1 AND s.live = 1 AND t.created_by IS NOT NULL
         ORDER BY s.topic",
    )?
    .query_map([subscriber], |row| row.get(0))?
    .collect()
}

/// The acknowledged seq of `origin`'s messages on `topic` for `subscriber`.
pub fn position(
    conn: &Connection,
    subscriber: &str,
    topic: &str,
    origin: &str,
) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM positions WHERE subscriber = ?1 AND topic = ?2 AND origin = ?3",
        )?
        .query_row([subscriber, topic, origin], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Members added (`true`) or removed (`false`) at run time.
pub fn member_changes(conn: &Connection) -> rusqlite::Result<Vec<(PeerAddr, bool)>> {
    conn.prepare_cached("SELECT host, port, present FROM members ORDER BY id")?
        .query_map([], |row| {
            let peer = PeerAddr {
                host: row.get(0)?,
                port: row.get(1)?,
            };
            Ok((peer, row.get(2)?))
        })?
        .collect()
}

/// Whether `id` was added (`Some(true)`) or removed (`Some(false)`) at run
/// time; `None` when neither.
pub fn member_present(conn: &Connection, id: &str) -> rusqlite::Result<Option<bool>> {
    conn.prepare_cached("SELECT present FROM members WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()
}

/// A cluster-wide setting, when one was ever set.
pub fn setting(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()
}

/// Counts per topic, for the topics listing.
const TOPIC_INFO: &str = "
    SELECT t.name, t.created_by,
        (SELECT count(*) FROM messages m WHERE m.topic = t.name
            AND (m.lamport, m.origin) > (t.created_lamport, t.created_origin)),
        (SELECT count(*) FROM subscriptions s WHERE s.topic = t.name AND s.live = 1),
        t.limits
    FROM topics t WHERE t.created_by IS NOT NULL";

/// Per existing topic, in name order: its stored messages and their
/// payload bytes (UTF-8).
pub fn topic_sizes(conn: &Connection) -> rusqlite::Result<Vec<(String, u64, u64)>> {
    conn.prepare_cached(
        // Not a LEFT JOIN of the `messages` view: SQLite would build the
        // whole view first.
        "SELECT t.name, count(m.seq), coalesce(sum(length(CAST(m.payload AS BLOB))), 0)
         FROM topics t
         LEFT JOIN names n ON n.name = t.name
         LEFT JOIN message_rows m ON m.topic_id = n.id
         WHERE t.created_by IS NOT NULL
         GROUP BY t.name ORDER BY t.name",
    )?
    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
    .collect()
}

/// One live subscription's backlog on this broker.
pub struct Backlog {
    pub subscriber: String,
    pub topic: String,
    pub shared: bool,
    /// Messages it has not acknowledged, leased or not.
    pub pending: u64,
    /// Of those, the ones leased at the time asked for.
    pub leased: u64,
    /// Age of the oldest of them at that time (0 without any).
    pub oldest_age_ms: u64,
}

/// The backlogs at `now_ms` of the live subscriptions of the subscribers
/// named from `first` to `last` (`None`: of all), in (subscriber, topic)
/// order.
pub fn backlogs(
    conn: &Connection,
    names: Option<(&str, &str)>,
    now_ms: i64,
) -> rusqlite::Result<Vec<Backlog>> {
    let (first, last) = names.unzip();
    // A subquery, not a LEFT JOIN of the `messages` view: SQLite would
    // build the whole view first. One subquery gives both the count and
    // the oldest time (as a JSON pair), so that the backlog is read once.
    let pending = "FROM messages m WHERE m.topic = s.topic
        AND (m.lamport, m.origin) > (s.start_lamport, s.start_origin)
        AND m.seq > coalesce((SELECT p.seq FROM positions p
                              WHERE p.subscriber = s.subscriber AND p.topic = s.topic
                                AND p.origin = m.origin), 0)
        AND NOT EXISTS (SELECT 1 FROM acks a
                        WHERE a.subscriber = s.subscriber AND a.origin = m.origin
                          AND a.seq = m.seq)";
    conn.prepare_cached(&format!(
        "SELECT s.subscriber, s.topic, s.shared IS NOT NULL,
                (SELECT json_array(count(*), min(m.published_at_ms)) {pending}),
                (SELECT count(*) FROM leases l
                 WHERE l.subscriber = s.subscriber AND l.topic = s.topic AND l.until_ms > ?3
                   AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.subscriber = l.subscriber
                                   AND a.origin = l.origin AND a.seq = l.seq))
         FROM subscriptions s
         JOIN topics t ON t.name = s.topic AND t.created_by IS NOT NULL
         WHERE s.live = 1 AND (?1 IS NULL OR s.subscriber BETWEEN ?1 AND ?2)
         ORDER BY s.subscriber, s.topic"
    ))?
    .query_map(params![first, last, now_ms], |row| {
        let counted: String = row.get(3)?;
        let (pending, oldest): (u64, Option<i64>) = serde_json::from_str(&counted)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?;
        let age_ms = oldest.map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0));
        Ok(Backlog {
            subscriber: row.get(0)?,
            topic: row.get(1)?,
            shared: row.get(2)?,
            pending,
            leased: row.get(4)?,
            oldest_age_ms: age_ms as u64,
        })
    })?
    .collect()
}

/// At most `limit` registered subscribers whose names come after `after`,
/// in name order.
pub fn subscribers(conn: &Connection, after: &str, limit: u32) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT id FROM subscribers WHERE id > ?1 ORDER BY id")?
        .query_map([after], |row| row.get(0))?
        .take(limit as usize)
        .collect()
}

/// At most `limit` topics whose names come after `after`, in name order.
/// (Rows come in index order, so taking `limit` of them stops the scan: a
/// bound `LIMIT ?` would make SQLite prepare the statement anew each time.)
pub fn topics(conn: &Connection, after: &str, limit: u32) -> rusqlite::Result<Vec<TopicInfo>> {
    conn.prepare_cached(&format!("{TOPIC_INFO} AND t.name > ?1 ORDER BY t.name"))?
        .query_map([after], topic_info_row)?
        .take(limit as usize)
        .collect()
}

pub fn topic(conn: &Connection, name: &str) -> rusqlite::Result<Option<TopicInfo>> {
    conn.prepare_cached(&format!("{TOPIC_INFO} AND t.name = ?1"))?
        .query_row([name], topic_info_row)
        .optional()
}

fn topic_info_row(row: &Row<'_>) -> rusqlite::Result<TopicInfo> {
    Ok(TopicInfo {
        name: row.get(0)?,
        created_by: row.get(1)?,
        messages: row.get(2)?,
        subscribers: row.get(3)?,
        limits: limits(row, 4)?.unwrap_or_default(),
    })
}

/// A topic's limits from their stored JSON (NULL: none).
fn limits(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<TopicLimits>> {
    nullable_json_column(row, column)
}

/// The existing topics that have limits this broker can read, with them
/// (limits written by a newer broker are passed over, not fatal).
pub fn limited_topics(conn: &Connection) -> rusqlite::Result<Vec<(String, TopicLimits)>> {
    let rows = conn
        .prepare_cached(
            "SELECT name, limits FROM topics WHERE limits IS NOT NULL AND created_by IS NOT NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, limits(row, 1).ok().flatten())))?
        .collect::<rusqlite::Result<Vec<(String, Option<TopicLimits>)>>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, limits)| Some((name, limits?)))
        .collect())
}

/// The epoch of `subscriber`'s subscription to `topic`: its latest seek's
/// stamp, or the initial epoch.
pub fn epoch(conn: &Connection, subscriber: &str, topic: &str) -> rusqlite::Result<Epoch> {
    Ok(conn
        .prepare_cached("SELECT lamport, origin FROM seeks WHERE subscriber = ?1 AND topic = ?2")?
        .query_row([subscriber, topic], |row| {
            Ok(Epoch {
                lamport: row.get(0)?,
                origin: row.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// The epochs of `subscriber`'s sought subscriptions, per topic.
pub fn epochs(
    conn: &Connection,
    subscriber: &str,
) -> rusqlite::Result<std::collections::BTreeMap<String, Epoch>> {
    conn.prepare_cached("SELECT topic, lamport, origin FROM seeks WHERE subscriber = ?1")?
        .query_map([subscriber], |row| {
            let epoch = Epoch {
                lamport: row.get(1)?,
                origin: row.get(2)?,
            };
            Ok((row.get(0)?, epoch))
        })?
        .collect()
}

/// The stamp `(lamport, origin)` of the held message `id` of `topic`.
pub fn message_stamp(
    conn: &Connection,
    topic: &str,
    id: &EventId,
) -> rusqlite::Result<Option<(u64, String)>> {
    conn.prepare_cached(
        "SELECT lamport FROM messages WHERE origin = ?1 AND seq = ?2 AND topic = ?3",
    )?
    .query_row(params![id.origin, id.seq, topic], |row| {
        Ok((row.get(0)?, id.origin.clone()))
    })
    .optional()
}

/// Where a seek starts reading `origin`'s messages of `topic`.
pub enum SeekFrom<'a> {
    /// At the first published at or after this time (ms).
    Time(i64),
    /// At the first stamped at or after this `(lamport, origin)`.
    Stamp(&'a (u64, String)),
}

/// The seq of `origin`'s first held message of `topic`, up to `upto`,
/// that a seek to `from` starts at, if any.
pub fn first_from(
    conn: &Connection,
    (topic, origin, upto): (&str, &str, u64),
    from: &SeekFrom<'_>,
) -> rusqlite::Result<Option<u64>> {
    let base = "SELECT seq FROM messages WHERE topic = ?1 AND origin = ?2 AND seq <= ?3";
    let first = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(&format!("{base} AND {sql} ORDER BY seq LIMIT 1"))?
            .query_row(params, |row| row.get(0))
            .optional()
    };
    match from {
        SeekFrom::Time(time_ms) => first(
            "published_at_ms >= ?4",
            params![topic, origin, upto, time_ms],
        ),
        SeekFrom::Stamp((lamport, stamp_origin)) => first(
            "(lamport, origin) >= (?4, ?5)",
            params![topic, origin, upto, lamport, stamp_origin],
        ),
    }
}

/// Per (topic, origin), the seq up to which a stream gave a reader its
/// messages already, and the subscription's epoch then: a read passes over
/// them as if acknowledged, unless a seek has moved the position since.
pub type Sent = std::collections::BTreeMap<(String, String), (u64, Epoch)>;

/// Messages `subscriber` has not acknowledged (nor been `sent`) and that
/// are not leased at `now_ms` (shared subscriptions) on `topics`, at most `max`,
/// oldest first: by `(lamport, origin)`, or in leader mode (`order`) by
/// epoch first, up to what the epochs deliver (see `epochs`).
///
/// Each topic is read per origin, from just past the acknowledged seq, in
/// seq order; per origin, stamps grow with seq, so merging the origins'
/// runs by stamp gives the delivery order without sorting the backlog.
pub fn pending(
    conn: &Connection,
    (subscriber, now_ms, sent): (&str, i64, &Sent),
    topics: &[String],
    order: Option<&Epochs>,
    max: u32,
) -> rusqlite::Result<Vec<Message>> {
    let mut messages = Vec::new();
    let skips = skips(conn, subscriber, now_ms)?;
    for topic in topics {
        let now_in = match sent.is_empty() {
            true => None,
            false => Some(epoch(conn, subscriber, topic)?),
        };
        for mut run in readable_runs(conn, subscriber, topic)? {
            let given = sent.get(&(topic.clone(), run.origin.clone()));
            if let (Some((seq, read_in)), Some(now_in)) = (given, &now_in) {
                if read_in == now_in {
                    run.acknowledged = run.acknowledged.max(*seq);
                }
            }
            let upto = order.map_or(run.have, |order| run.have.min(order.limit_of(&run.origin)));
            if upto > run.acknowledged {
                let reader = (subscriber, topic.as_str(), now_ms, skips);
                messages.extend(pending_run(conn, reader, &run, upto, max)?);
            }
        }
    }
    match order {
        Some(order) => messages.sort_by_cached_key(|m| {
            let (epoch, lamport, origin) = order.place(&m.origin, m.seq, m.lamport);
            (epoch, lamport, origin.to_string())
        }),
        None => messages.sort_by(|a, b| (a.lamport, &a.origin).cmp(&(b.lamport, &b.origin))),
    }
    messages.truncate(max as usize);
    Ok(messages)
}

/// Which of a subscriber's messages besides its positions a read must
/// skip: acknowledged one by one, leased now. A subscriber with neither
/// (every v1 one) is read without the two lookups per message.
#[derive(Debug, Clone, Copy)]
struct Skips {
    acked: bool,
    leased: bool,
}

fn skips(conn: &Connection, subscriber: &str, now_ms: i64) -> rusqlite::Result<Skips> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM acks WHERE subscriber = ?1),
                EXISTS (SELECT 1 FROM leases WHERE subscriber = ?1 AND eligible_ms > ?2)",
    )?
    .query_row(params![subscriber, now_ms], |row| {
        Ok(Skips {
            acked: row.get(0)?,
            leased: row.get(1)?,
        })
    })
}

/// The read of one run (`?1`-`?6`), skipping what `skips` says (`?7`: the
/// subscriber, `?8`: now).
fn pending_sql(skips: Skips) -> String {
    let acked = "AND NOT EXISTS (SELECT 1 FROM acks a
                       WHERE a.subscriber = ?7 AND a.origin = m.origin AND a.seq = m.seq)";
    let leased = "AND NOT EXISTS (SELECT 1 FROM leases l
                       WHERE l.subscriber = ?7 AND l.origin = m.origin AND l.seq = m.seq
                         AND l.eligible_ms > ?8)";
    format!(
        "SELECT m.origin, m.seq, m.lamport, m.topic, m.publisher, m.payload, m.published_at_ms,
                m.headers, m.msg_id
         FROM messages m
         WHERE m.topic = ?1 AND m.origin = ?2 AND m.seq > ?3 AND m.seq <= ?4
           AND (m.lamport, m.origin) > (?5, ?6)
           {} {}
         ORDER BY m.seq",
        if skips.acked { acked } else { "" },
        if skips.leased { leased } else { "" },
    )
}

/// What a subscriber may read of one topic's messages from one origin:
/// past `acknowledged`, up to `have` (so that no message still in flight is
/// skipped), and stamped after `after` (the later of the topic's creation
/// and the subscription's start).
struct Run {
    origin: String,
    have: u64,
    acknowledged: u64,
    after: (u64, String),
}

/// One run per origin; none when the subscription or the topic is not live.
fn readable_runs(conn: &Connection, subscriber: &str, topic: &str) -> rusqlite::Result<Vec<Run>> {
    conn.prepare_cached(
        "SELECT o.origin, o.have, coalesce(p.seq, 0),
                s.start_lamport, s.start_origin, t.created_lamport, t.created_origin
         FROM subscriptions s
         JOIN topics t ON t.name = s.topic AND t.created_by IS NOT NULL
         JOIN origins o
         LEFT JOIN positions p
             ON p.subscriber = s.subscriber AND p.topic = s.topic AND p.origin = o.origin
         WHERE s.subscriber = ?1 AND s.topic = ?2 AND s.live = 1",
    )?
    .query_map(params![subscriber, topic], |row| {
        let started: (u64, String) = (row.get(3)?, row.get(4)?);
        let created: (u64, String) = (row.get(5)?, row.get(6)?);
        Ok(Run {
            origin: row.get(0)?,
            have: row.get(1)?,
            acknowledged: row.get(2)?,
            after: started.max(created),
        })
    })?
    .collect()
}

/// Up to `max` messages of one run, up to seq `upto`, in seq order.
///
/// The rows come in index order, so taking `max` of them stops the scan; a
/// `LIMIT ?` would do the same but makes SQLite prepare the statement anew
/// at every run (a bound LIMIT counts as a value the plan depends on).
fn pending_run(
    conn: &Connection,
    (subscriber, topic, now_ms, skips): (&str, &str, i64, Skips),
    run: &Run,
    upto: u64,
    max: u32,
) -> rusqlite::Result<Vec<Message>> {
    let params = params![
        topic,
        run.origin,
        run.acknowledged,
        upto,
        run.after.0,
        run.after.1,
        subscriber,
        now_ms
    ];
    let mut statement = conn.prepare_cached(&pending_sql(skips))?;
    // A statement without the skips takes the first six only.
    let used = statement.parameter_count();
    let messages = statement
        .query_map(&params[..used], |row| {
            let origin: String = row.get(0)?;
            let seq: u64 = row.get(1)?;
            Ok(Message {
                id: message_id(&origin, seq),
                origin,
                seq,
                lamport: row.get(2)?,
                topic: row.get(3)?,
                publisher: row.get(4)?,
                payload: row.get(5)?,
                published_at_ms: row.get(6)?,
                headers: headers(row, 7)?,
                msg_id: row.get(8)?,
                deliveries: 0,
            })
        })?
        .take(max as usize)
        .collect();
    messages
}

/// Up to `max` messages of `topic`'s live incarnation past `after` (per
/// origin, the seq seen up to) and up to what this broker holds, oldest
/// first by `(lamport, origin)`: a read that belongs to no subscriber.
pub fn topic_messages_after(
    conn: &Connection,
    topic: &str,
    after: &Have,
    max: u32,
) -> Result<Vec<Message>, StoreError> {
    let (created_lamport, created_origin) =
        topic_creation(conn, topic)?.ok_or_else(|| StoreError::TopicNotFound(topic.to_string()))?;
    let none = Skips {
        acked: false,
        leased: false,
    };
    let mut messages = Vec::new();
    for (origin, have) in self::have(conn)? {
        let seen = after.get(&origin).copied().unwrap_or(0);
        if have > seen {
            let run = Run {
                origin,
                have,
                acknowledged: seen,
                after: (created_lamport, created_origin.clone()),
            };
            messages.extend(pending_run(conn, ("", topic, 0, none), &run, have, max)?);
        }
    }
    messages.sort_by(|a, b| (a.lamport, &a.origin).cmp(&(b.lamport, &b.origin)));
    messages.truncate(max as usize);
    Ok(messages)
}

/// The topics with messages in any of `ranges`: `(origin, after, upto)`,
/// seqs `after < seq <= upto` (read through the primary key).
pub fn topics_with_messages_in(
    conn: &Connection,
    ranges: &[(String, u64, u64)],
) -> rusqlite::Result<BTreeSet<String>> {
    let mut statement = conn.prepare_cached(
        "SELECT DISTINCT topic FROM messages WHERE origin = ?1 AND seq > ?2 AND seq <= ?3",
    )?;
    let mut topics = BTreeSet::new();
    for (origin, after, upto) in ranges {
        let rows = statement.query_map(params![origin, after, upto], |row| row.get(0))?;
        for topic in rows {
            topics.insert(topic?);
        }
    }
    Ok(topics)
}

/// Column `column` of `row`, JSON text, decoded.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    decode_json(column, &text)
}

/// [`json_column`] of a column that may be NULL.
fn nullable_json_column<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| decode_json(column, &text)).transpose()
}

fn decode_json<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Every lead event this broker holds (see `epochs`).
pub fn leads(conn: &Connection) -> rusqlite::Result<Vec<Lead>> {
    conn.prepare_cached(
        "SELECT origin, seq, term, prev_origin, prev_seq, base, repeats FROM leads",
    )?
    .query_map([], |row| {
        let prev_origin: Option<String> = row.get(3)?;
        let prev_seq: Option<u64> = row.get(4)?;
        Ok(Lead {
            id: EventId {
                origin: row.get(0)?,
                seq: row.get(1)?,
            },
            term: row.get(2)?,
            prev: prev_origin
                .zip(prev_seq)
                .map(|(origin, seq)| EventId { origin, seq }),
            base: json_column(row, 5)?,
            repeats: json_column(row, 6)?,
        })
    })?
    .collect()
}

/// Whether the replication mode was set after the event `id` (by stamp).
pub fn mode_set_after(conn: &Connection, id: &EventId) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM settings s JOIN events e ON e.origin = ?1 AND e.seq = ?2
                        WHERE s.name = 'mode' AND (s.lamport, s.origin) > (e.lamport, e.origin))",
    )?
    .query_row(params![id.origin, id.seq], |row| row.get(0))
}

/// The lead a new lead follows on: the one of the greatest term held
/// (the latest of a term, should a leader lead it twice).
pub fn latest_lead(conn: &Connection) -> rusqlite::Result<Option<Lead>> {
    Ok(leads(conn)?
        .into_iter()
        .max_by(|a, b| (a.term, a.id.seq).cmp(&(b.term, b.id.seq))))
}

/// Per origin, the highest seq below which this broker holds every event.
pub fn have(conn: &Connection) -> rusqlite::Result<Have> {
    conn.prepare_cached("SELECT origin, have FROM origins")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// The highest seq below which this broker holds every event of `origin`.
pub fn have_of(conn: &Connection, origin: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT have FROM origins WHERE origin = ?1")?
        .query_row([origin], |row| row.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// How much one sync may carry: at most `events` events, and no more bytes
/// of encoded events than `bytes` after the first event.
#[derive(Debug, Clone, Copy)]
pub struct SyncBudget {
    pub events: usize,
    pub bytes: usize,
}

/// The events this broker holds (`mine`) that a peer lacks (`theirs`), in
/// seq order per origin, but none of the origins in `skip`; messages
/// deleted since are sent as `Pruned`. A run of events all `kept` in
/// memory is taken from there, with the encodings it already has.
pub fn missing(
    conn: &Connection,
    kept: Option<&Mutex<RecentEvents>>,
    mine: &Have,
    theirs: &Have,
    skip: &HashSet<String>,
    budget: SyncBudget,
) -> Result<Vec<EncodedEvent>, StoreError> {
    let mut batch = Batch {
        events: Vec::new(),
        bytes: 0,
        budget,
    };
    for (origin, &have) in mine.iter().filter(|(origin, _)| !skip.contains(*origin)) {
        let after = theirs.get(origin).copied().unwrap_or(0);
        let mut next = after + 1;
        let in_memory =
            kept.and_then(|kept| lock(kept).between(origin, after, have, budget.events));
        // Encoded one by one: the budget may end the sync before the end.
        let events: Box<dyn Iterator<Item = _>> = match in_memory {
            Some(events) => Box::new(events.into_iter().map(|kept| (kept.seq, Ok(kept.encoded)))),
            None => Box::new(
                events_between(conn, origin, after, have, budget.events)?
                    .into_iter()
                    .map(|event| (event.seq, EncodedEvent::new(&event))),
            ),
        };
        for (seq, encoded) in events {
            batch.pruned(origin, next, seq - 1)?;
            next = seq + 1;
            batch.push(encoded.map_err(not_encoded)?);
            if batch.is_full() {
                return Ok(batch.events);
            }
        }
        batch.pruned(origin, next, have)?;
        if batch.is_full() {
            break;
        }
    }
    Ok(batch.events)
}

fn not_encoded(error: serde_json::Error) -> StoreError {
    StoreError::Failed(format!("encoding an event: {error}"))
}

/// A sync's events as they are gathered, within its budget.
struct Batch {
    events: Vec<EncodedEvent>,
    bytes: usize,
    budget: SyncBudget,
}

impl Batch {
    fn push(&mut self, event: EncodedEvent) {
        self.bytes += event.json().len();
        if self.events.len() < self.budget.events {
            self.events.push(event);
        }
    }

    /// Adds `Pruned` markers for `origin`'s seqs `from..=to`, as many as fit.
    fn pruned(&mut self, origin: &str, from: u64, to: u64) -> Result<(), StoreError> {
        let room = self.budget.events.saturating_sub(self.events.len()) as u64;
        let to = to.min(from.saturating_add(room).saturating_sub(1));
        for seq in from..=to {
            let marker = Event {
                origin: origin.to_string(),
                seq,
                lamport: 0,
                change: Change::Pruned,
            };
            self.push(EncodedEvent::new(&marker).map_err(not_encoded)?);
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.events.len() >= self.budget.events || self.bytes >= self.budget.bytes
    }
}

/// The stored events of `origin` with `after < seq <= until`, at most `limit`.
fn events_between(
    conn: &Connection,
    origin: &str,
    after: u64,
    until: u64,
    limit: usize,
) -> rusqlite::Result<Vec<Event>> {
    conn.prepare_cached(
        "SELECT seq, lamport, kind, actor, topic, start, ack_origin, ack_seq, NULL, NULL, details,
                NULL, NULL
             FROM events WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
         UNION ALL
         SELECT seq, lamport, 'publish', publisher, topic, NULL, NULL, NULL, payload,
                published_at_ms, NULL, headers, msg_id
             FROM messages WHERE origin = ?1 AND seq > ?2 AND seq <= ?3
         ORDER BY seq LIMIT ?4",
    )?
    .query_map(params![origin, after, until, limit], |row| {
        Ok(Event {
            origin: origin.to_string(),
            seq: row.get(0)?,
            lamport: row.get(1)?,
            change: stored_change(row)?,
        })
    })?
    .collect()
}

/// A change kept whole as JSON in the `details` column (10).
fn details(row: &Row<'_>) -> rusqlite::Result<Change> {
    json_column(row, 10)
}

/// A message's headers from their stored JSON (NULL: none).
fn headers(row: &Row<'_>, column: usize) -> rusqlite::Result<Headers> {
    Ok(nullable_json_column(row, column)?.unwrap_or_default())
}

/// Rebuilds a change from its stored columns (see `apply::store_event`).
fn stored_change(row: &Row<'_>) -> rusqlite::Result<Change> {
    let kind: String = row.get(2)?;
    let actor: String = row.get(3)?;
    let topic = || -> rusqlite::Result<String> { row.get(4) };
    Ok(match kind.as_str() {
        "register_publisher" => Change::RegisterPublisher { publisher: actor },
        "register_subscriber" => Change::RegisterSubscriber { subscriber: actor },
        // A creation with limits, and an acknowledgement after a seek,
        // keep their whole change in `details`.
        "create_topic" | "ack" if row.get::<_, Option<String>>(10)?.is_some() => details(row)?,
        "create_topic" => Change::CreateTopic {
            topic: topic()?,
            publisher: actor,
            limits: None,
        },
        "delete_topic" => Change::DeleteTopic {
            topic: topic()?,
            publisher: actor,
        },
        // A shared subscription keeps its whole change in `details`.
        "subscribe" if row.get::<_, Option<String>>(10)?.is_some() => details(row)?,
        "subscribe" => Change::Subscribe {
            subscriber: actor,
            topic: topic()?,
            shared: None,
            from: match row.get::<_, Option<String>>(5)?.as_deref() {
                Some("earliest") => StartFrom::Earliest,
                _ => StartFrom::Latest,
            },
        },
        "unsubscribe" => Change::Unsubscribe {
            subscriber: actor,
            topic: topic()?,
        },
        "ack" => Change::Ack {
            subscriber: actor,
            topic: topic()?,
            acked_origin: row.get(6)?,
            acked_seq: row.get(7)?,
            epoch: Epoch::default(),
        },
        "set_mode" => Change::SetMode { mode: actor },
        "add_member" => {
            let (host, port) = super::apply::split_id(&actor);
            Change::AddMember {
                host: host.to_string(),
                port,
            }
        }
        "remove_member" => Change::RemoveMember { member: actor },
        "lead" | "ack_messages" | "lease" | "set_limits" | "seek" => details(row)?,
        "publish" => Change::Publish {
            topic: topic()?,
            publisher: actor,
            payload: row.get(8)?,
            published_at_ms: row.get(9)?,
            headers: headers(row, 11)?,
            msg_id: row.get(12)?,
        },
        other => {
            return Err(rusqlite::Error::InvalidColumnType(
                2,
                format!("event kind {other}"),
                rusqlite::types::Type::Text,
            ))
        }
    })
}
