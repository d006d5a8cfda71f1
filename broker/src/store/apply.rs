//! Event merges. Each event is stored and merged into the state tables so
//! that the result depends only on the set of events, not on their order:
//!
//! - registrations: grow-only sets;
//! - a topic: the latest deletion (max register) ends every incarnation
//!   before it, and the live incarnation is the earliest creation after it;
//!   messages and subscriptions stamped before the latest deletion are gone;
//! - a subscription: last writer wins by stamp between subscribe and
//!   unsubscribe;
//! - an acknowledged position: the max seq per (subscriber, topic, origin);
//! - messages: a grow-only set keyed by `(origin, seq)`.
//!
//! Callers apply each event once (duplicates are recognised before, by seq).

use client::wire::{Headers, StartFrom};
use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Statement};

use crate::event::{Change, Event, Stamp};
use crate::names::BrokerId;
use client::peer::{Epoch, Have};

pub fn apply(conn: &Connection, event: &Event) -> rusqlite::Result<()> {
    let stamp = Stamp::of(event);
    match &event.change {
        Change::RegisterPublisher { publisher } => {
            store_event(conn, event, EventRow::new("register_publisher", publisher))?;
            conn.execute(
                "INSERT OR IGNORE INTO publishers (id) VALUES (?1)",
                [publisher],
            )?;
        }
        Change::RegisterSubscriber { subscriber } => {
            store_event(
                conn,
                event,
                EventRow::new("register_subscriber", subscriber),
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO subscribers (id) VALUES (?1)",
                [subscriber],
            )?;
        }
        Change::CreateTopic {
            topic,
            publisher,
            limits,
        } => {
            // A creation with limits keeps them in `details` (see `refresh_limits`).
            let details = limits.as_ref().map(|_| json(&event.change)).transpose()?;
            let row = EventRow {
                details: details.as_deref(),
                ..EventRow::new("create_topic", publisher).on(topic)
            };
            store_event(conn, event, row)?;
            merge_creation(conn, topic, publisher, &stamp)?;
            refresh_limits(conn, topic)?;
        }
        Change::DeleteTopic { topic, publisher } => {
            store_event(
                conn,
                event,
                EventRow::new("delete_topic", publisher).on(topic),
            )?;
            merge_deletion(conn, topic, &stamp)?;
            refresh_limits(conn, topic)?;
        }
        Change::SetLimits {
            topic, publisher, ..
        } => {
            let details = json(&event.change)?;
            let row = EventRow {
                details: Some(&details),
                ..EventRow::new("set_limits", publisher).on(topic)
            };
            store_event(conn, event, row)?;
            refresh_limits(conn, topic)?;
        }
        Change::Seek {
            subscriber,
            topic,
            positions,
        } => {
            let details = json(&event.change)?;
            let row = EventRow {
                details: Some(&details),
                ..EventRow::new("seek", subscriber).on(topic)
            };
            store_event(conn, event, row)?;
            merge_seek(conn, (subscriber, topic), &stamp, positions)?;
        }
        Change::Subscribe {
            subscriber,
            topic,
            from,
            shared,
        } => {
            let details = shared.as_ref().map(|_| json(&event.change)).transpose()?;
            let row = EventRow {
                start: Some(start_name(*from)),
                details: details.as_deref(),
                ..EventRow::new("subscribe", subscriber).on(topic)
            };
            store_event(conn, event, row)?;
            let start = match from {
                StartFrom::Earliest => Stamp::zero(),
                StartFrom::Latest => stamp.clone(),
            };
            let shared = shared.as_ref().map(json).transpose()?;
            let record = SubscriptionRecord {
                live: true,
                start: &start,
                shared: shared.as_deref(),
            };
            merge_subscription(conn, (subscriber, topic), &stamp, record)?;
        }
        Change::Unsubscribe { subscriber, topic } => {
            store_event(
                conn,
                event,
                EventRow::new("unsubscribe", subscriber).on(topic),
            )?;
            let record = SubscriptionRecord {
                live: false,
                start: &Stamp::zero(),
                shared: None,
            };
            merge_subscription(conn, (subscriber, topic), &stamp, record)?;
        }
        Change::Ack {
            subscriber,
            topic,
            acked_origin,
            acked_seq,
            epoch,
        } => {
            // An acknowledgement after a seek keeps its epoch in `details`.
            let details = (!epoch.is_initial())
                .then(|| json(&event.change))
                .transpose()?;
            let row = EventRow {
                ack: Some((acked_origin, *acked_seq)),
                details: details.as_deref(),
                ..EventRow::new("ack", subscriber).on(topic)
            };
            store_event(conn, event, row)?;
            merge_position(conn, (subscriber, topic, acked_origin), *acked_seq, epoch)?;
        }
        Change::AddMember { host, port } => {
            let id = format!("{host}:{port}");
            store_event(conn, event, EventRow::new("add_member", &id))?;
            merge_member(conn, &id, host, *port, true, &stamp)?;
        }
        Change::RemoveMember { member } => {
            store_event(conn, event, EventRow::new("remove_member", member))?;
            let (host, port) = split_id(member);
            merge_member(conn, member, host, port, false, &stamp)?;
        }
        Change::SetMode { mode } => {
            store_event(conn, event, EventRow::new("set_mode", mode))?;
            merge_setting(conn, "mode", mode, &stamp)?;
        }
        Change::Lead {
            term,
            prev,
            base,
            repeats,
        } => {
            let details = json(&event.change)?;
            let term_text = term.to_string();
            let row = EventRow {
                details: Some(&details),
                ..EventRow::new("lead", &term_text)
            };
            store_event(conn, event, row)?;
            let base = json(base)?;
            let repeats = json(repeats)?;
            let (prev_origin, prev_seq) = prev.as_ref().map(|p| (&p.origin, p.seq)).unzip();
            conn.prepare_cached(
                "INSERT OR IGNORE INTO leads
                     (origin, seq, term, prev_origin, prev_seq, base, repeats)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event.origin,
                event.seq,
                term,
                prev_origin,
                prev_seq,
                base,
                repeats
            ])?;
        }
        Change::AckMessages {
            subscriber,
            topic,
            ids,
            epoch,
        } => {
            let details = json(&event.change)?;
            let row = EventRow {
                details: Some(&details),
                ..EventRow::new("ack_messages", subscriber).on(topic)
            };
            store_event(conn, event, row)?;
            // A grow-only set per epoch; a later epoch's row replaces an
            // earlier one's.
            let mut insert = conn.prepare_cached(&format!(
                "INSERT INTO acks (subscriber, topic, origin, seq, epoch_lamport, epoch_origin)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE {NOT_SUPERSEDED}
                 ON CONFLICT (subscriber, origin, seq) DO UPDATE SET
                     topic = excluded.topic,
                     epoch_lamport = excluded.epoch_lamport,
                     epoch_origin = excluded.epoch_origin
                 WHERE {LATER_EPOCH}"
            ))?;
            for id in ids {
                insert.execute(params![
                    subscriber,
                    topic,
                    id.origin,
                    id.seq,
                    epoch.lamport,
                    epoch.origin
                ])?;
            }
        }
        Change::Lease {
            subscriber,
            topic,
            ids,
            until_ms,
            eligible_ms,
            delivered,
            epoch,
        } => {
            let details = json(&event.change)?;
            let row = EventRow {
                details: Some(&details),
                ..EventRow::new("lease", subscriber).on(topic)
            };
            store_event(conn, event, row)?;
            // Within an epoch: deliveries add up, the later stamp sets the
            // times; a later epoch's lease replaces the row.
            let same =
                "(excluded.epoch_lamport, excluded.epoch_origin) = (epoch_lamport, epoch_origin)";
            let later = "(excluded.lamport, excluded.stamp_origin) > (lamport, stamp_origin)";
            let mut merge = conn.prepare_cached(&format!(
                "INSERT INTO leases (subscriber, topic, origin, seq, deliveries, until_ms,
                                     eligible_ms, lamport, stamp_origin, epoch_lamport, epoch_origin)
                 SELECT ?1, ?2, ?3, ?4, ?7, ?8, ?9, ?10, ?11, ?5, ?6 WHERE {NOT_SUPERSEDED}
                 ON CONFLICT (subscriber, origin, seq) DO UPDATE SET
                     deliveries = iif({same}, deliveries + excluded.deliveries, excluded.deliveries),
                     until_ms = iif(NOT {same} OR {later}, excluded.until_ms, until_ms),
                     eligible_ms = iif(NOT {same} OR {later}, excluded.eligible_ms, eligible_ms),
                     stamp_origin = iif(NOT {same} OR {later}, excluded.stamp_origin, stamp_origin),
                     lamport = iif({same}, max(lamport, excluded.lamport), excluded.lamport),
                     epoch_lamport = excluded.epoch_lamport,
                     epoch_origin = excluded.epoch_origin
                 WHERE {LATER_OR_SAME_EPOCH}"
            ))?;
            for id in ids {
                merge.execute(params![
                    subscriber,
                    topic,
                    id.origin,
                    id.seq,
                    epoch.lamport,
                    epoch.origin,
                    u32::from(*delivered),
                    until_ms,
                    eligible_ms,
                    stamp.lamport,
                    stamp.origin
                ])?;
            }
        }
        Change::Pruned => {}
        Change::Publish {
            topic,
            publisher,
            payload,
            published_at_ms,
            headers,
            msg_id,
        } => {
            if !deleted_after(conn, topic, &stamp)? {
                let row = MessageRow::new(
                    (event.seq, event.lamport),
                    payload,
                    headers,
                    msg_id.as_deref(),
                );
                let run = MessageRun {
                    origin: &event.origin,
                    topic,
                    publisher,
                    published_at_ms: *published_at_ms,
                    messages: &[row],
                };
                insert_messages(conn, &run)?;
            }
        }
    }
    Ok(())
}

/// The columns of a non-message event in the `events` table.
struct EventRow<'a> {
    kind: &'static str,
    actor: &'a str,
    topic: Option<&'a str>,
    start: Option<&'static str>,
    ack: Option<(&'a str, u64)>,
    /// The whole change as JSON, for kinds that do not fit the columns.
    details: Option<&'a str>,
}

impl<'a> EventRow<'a> {
    fn new(kind: &'static str, actor: &'a str) -> Self {
        EventRow {
            kind,
            actor,
            topic: None,
            start: None,
            ack: None,
            details: None,
        }
    }

    fn on(self, topic: &'a str) -> Self {
        EventRow {
            topic: Some(topic),
            ..self
        }
    }
}

fn start_name(from: StartFrom) -> &'static str {
    match from {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    }
}

fn store_event(conn: &Connection, event: &Event, row: EventRow<'_>) -> rusqlite::Result<()> {
    let (ack_origin, ack_seq) = row.ack.unzip();
    conn.prepare_cached(
        "INSERT INTO events
             (origin, seq, lamport, kind, actor, topic, start, ack_origin, ack_seq, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        event.origin,
        event.seq,
        event.lamport,
        row.kind,
        row.actor,
        row.topic,
        row.start,
        ack_origin,
        ack_seq,
        row.details
    ])?;
    Ok(())
}

/// Messages one origin sequenced for one publisher on one topic at one
/// time (a publish request), as stored in `messages`.
pub struct MessageRun<'a> {
    pub origin: &'a str,
    pub topic: &'a str,
    pub publisher: &'a str,
    pub published_at_ms: i64,
    pub messages: &'a [MessageRow<'a>],
}

/// One message of a run, as stored.
pub struct MessageRow<'a> {
    pub seq: u64,
    pub lamport: u64,
    pub payload: &'a str,
    /// The headers as a JSON object, `None` when there are none.
    pub headers: Option<String>,
    pub msg_id: Option<&'a str>,
}

impl<'a> MessageRow<'a> {
    pub fn new(
        (seq, lamport): (u64, u64),
        payload: &'a str,
        headers: &Headers,
        msg_id: Option<&'a str>,
    ) -> MessageRow<'a> {
        MessageRow {
            seq,
            lamport,
            payload,
            headers: (!headers.is_empty())
                .then(|| serde_json::to_string(headers).expect("strings serialize")),
            msg_id,
        }
    }
}

/// The columns each row binds.
const ROW_COLUMNS: usize = 5;

/// Rows one multi-row INSERT stores.
const ROWS_PER_INSERT: usize = 64;

/// The INSERT of `rows` messages of one run: the run's columns are bound
/// once (`?1`–`?4`), then each row's seq, lamport, payload, headers and
/// msg_id.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let columns: Vec<String> = (0..ROW_COLUMNS)
                .map(|column| format!("?{}", 5 + ROW_COLUMNS * row + column))
                .collect();
            format!("(?1, ?2, ?3, ?4, {})", columns.join(", "))
        })
        .collect();
    format!(
        "INSERT OR ROLLBACK INTO message_rows
             (origin_id, topic_id, publisher, published_at_ms, seq, lamport, payload, headers, msg_id)
         VALUES {}",
        values.join(", ")
    )
}

/// Stores messages the caller checked belong to their topic's live
/// incarnation (or to none that is deleted): checked before, because an
/// INSERT … SELECT would make SQLite journal every page it touches.
///
/// Many rows go in one statement: a statement keeps its B-tree cursors
/// open from row to row, so appending to an index costs one comparison
/// with its last entry instead of a descent from the root.
///
/// A message stored twice (which seqs rule out) rolls back the whole
/// transaction (`OR ROLLBACK`), and the writer fails the batch. Undoing the
/// statement alone (SQLite's default) would make every multi-row INSERT
/// copy each page it touches into a statement journal first: 7–9% of the
/// writer's time under batches.
pub fn insert_messages(conn: &Connection, run: &MessageRun<'_>) -> rusqlite::Result<()> {
    static MANY: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_INSERT));
    static ONE: LazyLock<String> = LazyLock::new(|| insert_sql(1));
    if run.messages.is_empty() {
        return Ok(());
    }
    let keys = (name_id(conn, run.origin)?, name_id(conn, run.topic)?);
    let mut chunks = run.messages.chunks_exact(ROWS_PER_INSERT);
    if run.messages.len() >= ROWS_PER_INSERT {
        let mut many = conn.prepare_cached(&MANY)?;
        for chunk in chunks.by_ref() {
            insert_rows(&mut many, run, keys, chunk)?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut one = conn.prepare_cached(&ONE)?;
        for message in chunks.remainder() {
            insert_rows(&mut one, run, keys, std::slice::from_ref(message))?;
        }
    }
    remember_msg_ids(conn, run)
}

/// The id that stands for `name` (an origin's or a topic's) in
/// `message_rows`, given it when it has none yet (see migration 0015).
fn name_id(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    let known = conn
        .prepare_cached("SELECT id FROM names WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    match known {
        Some(id) => Ok(id),
        None => {
            conn.prepare_cached("INSERT INTO names (name) VALUES (?1)")?
                .execute([name])?;
            Ok(conn.last_insert_rowid())
        }
    }
}

/// Keeps the client ids of `run`'s messages for deduplication (see
/// migration 0013).
fn remember_msg_ids(conn: &Connection, run: &MessageRun<'_>) -> rusqlite::Result<()> {
    let mut with_ids = run
        .messages
        .iter()
        .filter(|m| m.msg_id.is_some())
        .peekable();
    if with_ids.peek().is_none() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO msg_ids
             (topic, publisher, msg_id, origin, seq, lamport, published_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for message in with_ids {
        insert.execute(params![
            run.topic,
            run.publisher,
            message.msg_id,
            run.origin,
            message.seq,
            message.lamport,
            run.published_at_ms
        ])?;
    }
    Ok(())
}

/// Binds and runs one INSERT of `rows`, with the ids of the run's origin
/// and topic (`keys`).
fn insert_rows(
    statement: &mut Statement<'_>,
    run: &MessageRun<'_>,
    (origin_id, topic_id): (i64, i64),
    rows: &[MessageRow<'_>],
) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(1, origin_id)?;
    statement.raw_bind_parameter(2, topic_id)?;
    statement.raw_bind_parameter(3, run.publisher)?;
    statement.raw_bind_parameter(4, run.published_at_ms)?;
    for (row, message) in rows.iter().enumerate() {
        let first = 5 + ROW_COLUMNS * row;
        statement.raw_bind_parameter(first, message.seq)?;
        statement.raw_bind_parameter(first + 1, message.lamport)?;
        statement.raw_bind_parameter(first + 2, message.payload)?;
        statement.raw_bind_parameter(first + 3, message.headers.as_deref())?;
        statement.raw_bind_parameter(first + 4, message.msg_id)?;
    }
    statement.raw_execute()?;
    Ok(())
}

/// What the messages of one publish request share: the topic, the
/// publisher and the time (`None` for any other event).
pub fn run_key(event: &Event) -> Option<(&str, &str, i64)> {
    match &event.change {
        Change::Publish {
            topic,
            publisher,
            published_at_ms,
            ..
        } => Some((topic, publisher, *published_at_ms)),
        _ => None,
    }
}

/// Applies a run of received events as `apply` would: either one event,
/// or messages of one publish request (consecutive seqs of one origin, one
/// `run_key`), stored by multi-row inserts. Stamps grow with seq, so when
/// the first message is not stamped before the topic's latest deletion,
/// none is; otherwise they are applied one by one.
pub fn apply_run(conn: &Connection, run: &[Event]) -> rusqlite::Result<()> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let (topic, publisher, published_at_ms) = match run_key(first) {
        Some(key) if !deleted_after(conn, key.0, &Stamp::of(first))? => key,
        _ => return run.iter().try_for_each(|event| apply(conn, event)),
    };
    let messages: Vec<MessageRow<'_>> = run
        .iter()
        .filter_map(|event| match &event.change {
            Change::Publish {
                payload,
                headers,
                msg_id,
                ..
            } => Some(MessageRow::new(
                (event.seq, event.lamport),
                payload,
                headers,
                msg_id.as_deref(),
            )),
            _ => None,
        })
        .collect();
    insert_messages(
        conn,
        &MessageRun {
            origin: &first.origin,
            topic,
            publisher,
            published_at_ms,
            messages: &messages,
        },
    )
}

/// Whether the topic's latest deletion is stamped after `stamp`, which
/// ends whatever `stamp` made in it.
fn deleted_after(conn: &Connection, topic: &str, stamp: &Stamp) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM topics WHERE name = ?1
                        AND (deleted_lamport, deleted_origin) > (?2, ?3))",
    )?
    .query_row(params![topic, stamp.lamport, stamp.origin], |row| {
        row.get(0)
    })
}

/// `<host>:<port>` as host and port (port 0 when it is not an id: stored
/// events were checked when they came in).
pub fn split_id(id: &str) -> (&str, u16) {
    BrokerId::parse(id).map_or((id, 0), |id| (id.host, id.port))
}

/// A member joins (`present`) or leaves; the latest stamp wins.
fn merge_member(
    conn: &Connection,
    id: &str,
    host: &str,
    port: u16,
    present: bool,
    stamp: &Stamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO members (id, host, port, present, lamport, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET
             present = excluded.present, lamport = excluded.lamport, origin = excluded.origin
         WHERE (excluded.lamport, excluded.origin) > (lamport, origin)",
        params![id, host, port, present, stamp.lamport, stamp.origin],
    )?;
    Ok(())
}

/// A cluster-wide setting: the latest stamp wins.
fn merge_setting(
    conn: &Connection,
    name: &str,
    value: &str,
    stamp: &Stamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (name, value, lamport, origin) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
             value = excluded.value, lamport = excluded.lamport, origin = excluded.origin
         WHERE (excluded.lamport, excluded.origin) > (lamport, origin)",
        params![name, value, stamp.lamport, stamp.origin],
    )?;
    Ok(())
}

/// A creation after the latest deletion starts the live incarnation unless
/// an earlier creation after that deletion already did.
fn merge_creation(
    conn: &Connection,
    topic: &str,
    publisher: &str,
    stamp: &Stamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO topics (name, created_by, created_lamport, created_origin) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
             created_by = excluded.created_by,
             created_lamport = excluded.created_lamport,
             created_origin = excluded.created_origin
         WHERE (excluded.created_lamport, excluded.created_origin) > (deleted_lamport, deleted_origin)
           AND (created_by IS NULL
                OR (excluded.created_lamport, excluded.created_origin) < (created_lamport, created_origin))",
        params![topic, publisher, stamp.lamport, stamp.origin],
    )?;
    Ok(())
}

/// A deletion later than any before it ends everything stamped before it;
/// the live incarnation becomes the earliest creation after it, if any.
fn merge_deletion(conn: &Connection, topic: &str, stamp: &Stamp) -> rusqlite::Result<()> {
    let advanced = conn.execute(
        "INSERT INTO topics (name, deleted_lamport, deleted_origin) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET
             deleted_lamport = excluded.deleted_lamport,
             deleted_origin = excluded.deleted_origin
         WHERE (excluded.deleted_lamport, excluded.deleted_origin) > (deleted_lamport, deleted_origin)",
        params![topic, stamp.lamport, stamp.origin],
    )?;
    if advanced == 0 {
        return Ok(());
    }
    conn.execute(
        "UPDATE topics SET (created_by, created_lamport, created_origin) = (
             SELECT actor, lamport, origin FROM events
             WHERE kind = 'create_topic' AND topic = ?1 AND (lamport, origin) > (?2, ?3)
             ORDER BY lamport, origin LIMIT 1)
         WHERE name = ?1",
        params![topic, stamp.lamport, stamp.origin],
    )?;
    for sql in [
        "DELETE FROM message_rows WHERE rowid IN (
             SELECT row_id FROM messages WHERE topic = ?1 AND (lamport, origin) < (?2, ?3))",
        "DELETE FROM msg_ids WHERE topic = ?1 AND (lamport, origin) < (?2, ?3)",
    ] {
        conn.prepare_cached(sql)?
            .execute(params![topic, stamp.lamport, stamp.origin])?;
    }
    conn.execute(
        "DELETE FROM subscriptions WHERE topic = ?1 AND (lamport, origin) < (?2, ?3)",
        params![topic, stamp.lamport, stamp.origin],
    )?;
    Ok(())
}

/// A subscription's last-writer-wins record.
struct SubscriptionRecord<'a> {
    live: bool,
    start: &'a Stamp,
    /// The shared settings as JSON; `None` for a v1 subscription.
    shared: Option<&'a str>,
}

/// Subscribe (`live`) or unsubscribe; the later stamp wins, and nothing
/// stamped before the topic's latest deletion survives. A seek later than
/// the record makes it read from its position alone (start: zero).
fn merge_subscription(
    conn: &Connection,
    (subscriber, topic): (&str, &str),
    stamp: &Stamp,
    record: SubscriptionRecord<'_>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO subscriptions
             (subscriber, topic, live, lamport, origin, start_lamport, start_origin, shared)
         SELECT ?1, ?2, ?3, ?4, ?5,
                iif(sought.later, 0, ?6), iif(sought.later, '', ?7), ?8
         FROM (SELECT EXISTS (SELECT 1 FROM seeks k WHERE k.subscriber = ?1 AND k.topic = ?2
                                AND (k.lamport, k.origin) > (?4, ?5)) AS later) sought
         WHERE NOT EXISTS (SELECT 1 FROM topics WHERE name = ?2
                           AND (deleted_lamport, deleted_origin) > (?4, ?5))
         ON CONFLICT (subscriber, topic) DO UPDATE SET
             live = excluded.live,
             lamport = excluded.lamport,
             origin = excluded.origin,
             start_lamport = excluded.start_lamport,
             start_origin = excluded.start_origin,
             shared = excluded.shared
         WHERE (excluded.lamport, excluded.origin) > (lamport, origin)",
        params![
            subscriber,
            topic,
            record.live,
            stamp.lamport,
            stamp.origin,
            record.start.lamport,
            record.start.origin,
            record.shared
        ],
    )?;
    Ok(())
}

/// SQL condition: no seek of subscriber `?1` on topic `?2` is later than
/// the epoch `(?5, ?6)` of the row being merged (else it no longer counts).
const NOT_SUPERSEDED: &str = "NOT EXISTS (SELECT 1 FROM seeks k
    WHERE k.subscriber = ?1 AND k.topic = ?2 AND (k.lamport, k.origin) > (?5, ?6))";

/// SQL condition of an upsert: the new row's epoch is later than the stored one's.
const LATER_EPOCH: &str =
    "(excluded.epoch_lamport, excluded.epoch_origin) > (epoch_lamport, epoch_origin)";

/// SQL condition of an upsert: the new row's epoch is the stored one's or later.
const LATER_OR_SAME_EPOCH: &str =
    "(excluded.epoch_lamport, excluded.epoch_origin) >= (epoch_lamport, epoch_origin)";

/// A position: per epoch the max seq, and the later epoch wins.
fn merge_position(
    conn: &Connection,
    (subscriber, topic, origin): (&str, &str, &str),
    seq: u64,
    epoch: &Epoch,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO positions (subscriber, topic, origin, seq, epoch_lamport, epoch_origin)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE {NOT_SUPERSEDED}
         ON CONFLICT (subscriber, topic, origin) DO UPDATE SET
             seq = iif({LATER_EPOCH}, excluded.seq, max(seq, excluded.seq)),
             epoch_lamport = excluded.epoch_lamport,
             epoch_origin = excluded.epoch_origin
         WHERE {LATER_OR_SAME_EPOCH}"
    ))?
    .execute(params![
        subscriber,
        topic,
        origin,
        seq,
        epoch.lamport,
        epoch.origin
    ])?;
    Ok(())
}

/// A seek later than every other of the subscription starts its epoch:
/// what earlier epochs acknowledged and leased is dropped, the position
/// becomes the seek's, and the subscription reads from that position alone
/// (not from where it started; see `merge_subscription`).
fn merge_seek(
    conn: &Connection,
    (subscriber, topic): (&str, &str),
    stamp: &Stamp,
    positions: &Have,
) -> rusqlite::Result<()> {
    let latest = conn
        .prepare_cached(
            "INSERT INTO seeks (subscriber, topic, lamport, origin) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subscriber, topic) DO UPDATE SET
                 lamport = excluded.lamport, origin = excluded.origin
             WHERE (excluded.lamport, excluded.origin) > (lamport, origin)",
        )?
        .execute(params![subscriber, topic, stamp.lamport, stamp.origin])?
        == 1;
    if !latest {
        return Ok(());
    }
    for table in ["positions", "acks", "leases"] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE subscriber = ?1 AND topic = ?2
                 AND (epoch_lamport, epoch_origin) < (?3, ?4)"
        ))?
        .execute(params![subscriber, topic, stamp.lamport, stamp.origin])?;
    }
    let epoch = Epoch {
        lamport: stamp.lamport,
        origin: stamp.origin.clone(),
    };
    for (origin, seq) in positions {
        merge_position(conn, (subscriber, topic, origin), *seq, &epoch)?;
    }
    conn.prepare_cached(
        "UPDATE subscriptions SET start_lamport = 0, start_origin = ''
         WHERE subscriber = ?1 AND topic = ?2 AND (lamport, origin) < (?3, ?4)",
    )?
    .execute(params![subscriber, topic, stamp.lamport, stamp.origin])?;
    Ok(())
}

/// Sets a topic's `limits` column to those of the latest `set_limits`
/// event made for its live incarnation, else of its creation (NULL without
/// any, or while the topic does not exist).
fn refresh_limits(conn: &Connection, topic: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE topics SET limits = coalesce(
             (SELECT json_extract(e.details, '$.set_limits.limits') FROM events e
              WHERE e.kind = 'set_limits' AND e.topic = ?1
                AND (e.lamport, e.origin) > (topics.created_lamport, topics.created_origin)
                AND json_extract(e.details, '$.set_limits.created_lamport') = topics.created_lamport
                AND json_extract(e.details, '$.set_limits.created_origin') = topics.created_origin
              ORDER BY e.lamport DESC, e.origin DESC LIMIT 1),
             (SELECT json_extract(e.details, '$.create_topic.limits') FROM events e
              WHERE e.kind = 'create_topic' AND e.topic = ?1
                AND e.lamport = topics.created_lamport AND e.origin = topics.created_origin))
         WHERE name = ?1",
    )?
    .execute([topic])?;
    Ok(())
}

/// `value` as JSON, for a column.
fn json(value: &impl serde::Serialize) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    fn event(origin: &str, seq: u64, lamport: u64, change: Change) -> Event {
        Event {
            origin: origin.to_string(),
            seq,
            lamport,
            change,
        }
    }

    fn create(origin: &str, seq: u64, lamport: u64, publisher: &str) -> Event {
        let change = Change::CreateTopic {
            topic: "news".into(),
            publisher: publisher.into(),
            limits: None,
        };
        event(origin, seq, lamport, change)
    }

    fn delete(origin: &str, seq: u64, lamport: u64) -> Event {
        let change = Change::DeleteTopic {
            topic: "news".into(),
            publisher: "P1".into(),
        };
        event(origin, seq, lamport, change)
    }

    fn publish(origin: &str, seq: u64, lamport: u64, payload: &str) -> Event {
        let change = Change::Publish {
            topic: "news".into(),
            publisher: "P1".into(),
            payload: payload.into(),
            published_at_ms: 0,
            headers: Headers::new(),
            // Kept in `msg_ids` too, which every order must agree on.
            msg_id: Some(format!("id-{payload}")),
        };
        event(origin, seq, lamport, change)
    }

    fn subscription(origin: &str, seq: u64, lamport: u64, live: bool) -> Event {
        let (subscriber, topic) = ("S1".to_string(), "news".to_string());
        let change = if live {
            Change::Subscribe {
                subscriber,
                topic,
                from: StartFrom::Earliest,
                shared: None,
            }
        } else {
            Change::Unsubscribe { subscriber, topic }
        };
        event(origin, seq, lamport, change)
    }

    fn ack(origin: &str, seq: u64, lamport: u64, acked_seq: u64) -> Event {
        let change = Change::Ack {
            subscriber: "S1".into(),
            topic: "news".into(),
            acked_origin: "A".into(),
            acked_seq,
            epoch: Epoch::default(),
        };
        event(origin, seq, lamport, change)
    }

    /// The merged state after applying `events` in the given order.
    fn state_after(events: &[&Event]) -> Vec<String> {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        for event in events {
            apply(&conn, event).unwrap();
        }
        let dumps = [
            "SELECT name || ' ' || coalesce(created_by, '-') || ' ' || deleted_lamport
                 || coalesce(' ' || limits, '') FROM topics",
            "SELECT topic || ' ' || payload FROM messages ORDER BY origin, seq",
            "SELECT 'id ' || topic || ' ' || publisher || ' ' || msg_id || ' ' || origin || ' ' || seq
                 FROM msg_ids ORDER BY topic, publisher, msg_id, origin, seq",
            "SELECT subscriber || ' ' || topic || ' ' || live || coalesce(' ' || shared, '')
                 || iif(start_lamport > 0, ' from ' || start_lamport || start_origin, '')
                 FROM subscriptions",
            "SELECT subscriber || ' ' || origin || ' ' || seq || {EPOCH} FROM positions",
            "SELECT 'seek ' || subscriber || ' ' || topic || ' @' || lamport || origin FROM seeks",
            "SELECT id FROM publishers UNION ALL SELECT id FROM subscribers",
            "SELECT origin || ' ' || seq || ' ' || term || ' ' || coalesce(prev_origin, '-')
                 || ' ' || base || ' ' || repeats FROM leads ORDER BY origin, seq",
            "SELECT 'acked ' || subscriber || ' ' || topic || ' ' || origin || ' ' || seq
                 || {EPOCH} FROM acks ORDER BY subscriber, origin, seq",
            "SELECT 'lease ' || subscriber || ' ' || origin || ' ' || seq || ' ' || deliveries
                 || ' ' || until_ms || ' ' || eligible_ms || {EPOCH}
                 FROM leases ORDER BY subscriber, origin, seq",
        ];
        // A row's epoch, when a seek started it: " @<lamport><origin>".
        const EPOCH: &str = "iif(epoch_lamport > 0, ' @' || epoch_lamport || epoch_origin, '')";
        dumps
            .iter()
            .flat_map(|sql| {
                let mut statement = conn.prepare(&sql.replace("{EPOCH}", EPOCH)).unwrap();
                let rows: Vec<String> = statement
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                rows
            })
            .collect()
    }

    /// Every order of `events` (Heap's algorithm) gives the same state; returns it.
    fn same_state_in_every_order(events: &[Event]) -> Vec<String> {
        let mut order: Vec<&Event> = events.iter().collect();
        let expected = state_after(&order);
        let mut counters = vec![0; order.len()];
        let mut i = 0;
        while i < order.len() {
            if counters[i] < i {
                order.swap(if i % 2 == 0 { 0 } else { counters[i] }, i);
                assert_eq!(state_after(&order), expected, "order {order:?}");
                counters[i] += 1;
                i = 0;
            } else {
                counters[i] = 0;
                i += 1;
            }
        }
        expected
    }

    #[test]
    fn delete_and_recreate_converge_in_any_order() {
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            publish("A", 2, 3, "old"),
            delete("A", 3, 5),
            create("B", 1, 10, "P2"),
            publish("B", 2, 12, "new"),
        ]);
        assert_eq!(state, ["news P2 5", "news new", "id news P1 id-new B 2"]);
    }

    #[test]
    fn concurrent_creations_keep_the_earliest_creator() {
        let state = same_state_in_every_order(&[
            create("B", 1, 2, "P2"),
            create("A", 1, 2, "P1"),
            publish("A", 2, 3, "kept"),
        ]);
        assert_eq!(state, ["news P1 0", "news kept", "id news P1 id-kept A 2"]);
    }

    #[test]
    fn latest_subscription_change_wins_and_deletion_ends_older_ones() {
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            subscription("A", 2, 2, true),
            subscription("B", 1, 4, false),
            subscription("A", 3, 6, true),
        ]);
        assert_eq!(state, ["news P1 0", "S1 news 1"]);
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            subscription("A", 2, 2, true),
            delete("B", 1, 3),
        ]);
        assert_eq!(state, ["news - 3"]);
    }

    fn lead(origin: &str, seq: u64, term: u64, prev: Option<(&str, u64)>) -> Event {
        let change = Change::Lead {
            term,
            prev: prev.map(|(origin, seq)| client::peer::EventId {
                origin: origin.to_string(),
                seq,
            }),
            base: [("A".to_string(), 2)].into_iter().collect(),
            repeats: prev
                .map(|_| client::peer::EventId {
                    origin: "A".to_string(),
                    seq: 2,
                })
                .into_iter()
                .collect(),
        };
        event(origin, seq, term * 10, change)
    }

    #[test]
    fn leads_are_a_grow_only_set_whatever_else_comes() {
        let state = same_state_in_every_order(&[
            lead("A", 3, 1, None),
            create("A", 1, 1, "P1"),
            publish("A", 2, 3, "m"),
            lead("B", 1, 2, Some(("A", 3))),
        ]);
        assert_eq!(
            state,
            [
                "news P1 0",
                "news m",
                "id news P1 id-m A 2",
                r#"A 3 1 - {"A":2} []"#,
                r#"B 1 2 A {"A":2} [{"origin":"A","seq":2}]"#
            ]
        );
    }

    fn ack_messages(origin: &str, seq: u64, lamport: u64, acked: &[(&str, u64)]) -> Event {
        let change = Change::AckMessages {
            subscriber: "S1".into(),
            topic: "news".into(),
            ids: acked
                .iter()
                .map(|(origin, seq)| client::peer::EventId {
                    origin: origin.to_string(),
                    seq: *seq,
                })
                .collect(),
            epoch: Epoch::default(),
        };
        event(origin, seq, lamport, change)
    }

    #[test]
    fn acknowledgements_of_single_messages_are_a_grow_only_set() {
        // Beside the messages they name (before or after them), positions,
        // an unsubscription and a deletion of the topic.
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            publish("A", 2, 2, "m2"),
            publish("A", 3, 3, "m3"),
            ack_messages("B", 1, 4, &[("A", 3)]),
            ack_messages("C", 1, 5, &[("A", 2), ("A", 3)]),
            ack("B", 2, 6, 2),
        ]);
        assert_eq!(
            state,
            [
                "news P1 0",
                "news m2",
                "news m3",
                "id news P1 id-m2 A 2",
                "id news P1 id-m3 A 3",
                "S1 A 2",
                "acked S1 news A 2",
                "acked S1 news A 3"
            ]
        );
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            subscription("A", 2, 2, true),
            ack_messages("B", 1, 3, &[("A", 9)]),
            subscription("B", 2, 4, false),
            delete("C", 1, 5),
        ]);
        assert_eq!(state, ["news - 5", "acked S1 news A 9"]);
    }

    fn shared_subscription(origin: &str, seq: u64, lamport: u64, ack_wait_ms: u64) -> Event {
        let change = Change::Subscribe {
            subscriber: "S1".into(),
            topic: "news".into(),
            from: StartFrom::Earliest,
            shared: Some(client::wire::SharedSettings {
                ack_wait_ms,
                backoff_ms: vec![0],
                max_deliveries: None,
                dead_letter_topic: None,
            }),
        };
        event(origin, seq, lamport, change)
    }

    #[test]
    fn a_subscriptions_settings_are_part_of_its_last_writer_wins_record() {
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            subscription("A", 2, 2, true),
            shared_subscription("B", 1, 3, 5000),
            shared_subscription("C", 1, 3, 9000),
        ]);
        assert_eq!(
            state[1],
            r#"S1 news 1 {"ack_wait_ms":9000,"backoff_ms":[0]}"#
        );
        let state = same_state_in_every_order(&[
            create("A", 1, 1, "P1"),
            shared_subscription("B", 1, 3, 5000),
            subscription("A", 2, 4, false),
        ]);
        assert_eq!(state[1], "S1 news 0");
    }

    fn lease(origin: &str, seq: u64, lamport: u64, until_ms: i64, delivered: bool) -> Event {
        let change = Change::Lease {
            subscriber: "S1".into(),
            topic: "news".into(),
            ids: vec![client::peer::EventId {
                origin: "A".to_string(),
                seq: 2,
            }],
            until_ms,
            eligible_ms: until_ms + 5,
            delivered,
            epoch: Epoch::default(),
        };
        event(origin, seq, lamport, change)
    }

    #[test]
    fn leases_count_deliveries_and_keep_the_latest_change() {
        // Two brokers leased the message at once (gossip), one nacked it
        // later, one extended it at the same stamp from another origin.
        let state = same_state_in_every_order(&[
            publish("A", 2, 2, "m"),
            lease("B", 1, 5, 100, true),
            lease("C", 1, 5, 200, true),
            lease("B", 2, 9, 50, false),
            lease("D", 1, 9, 70, false),
        ]);
        assert_eq!(
            state,
            ["news m", "id news P1 id-m A 2", "lease S1 A 2 2 70 75"]
        );
    }

    #[test]
    fn positions_take_the_maximum() {
        let state =
            same_state_in_every_order(&[ack("A", 1, 1, 7), ack("B", 1, 2, 3), ack("A", 2, 3, 5)]);
        assert_eq!(state, ["S1 A 7"]);
    }

    fn with_limits(mut event: Event, max_messages: u64) -> Event {
        let limits = client::wire::TopicLimits {
            max_messages: Some(max_messages),
            ..Default::default()
        };
        match &mut event.change {
            Change::CreateTopic { limits: set, .. } => *set = Some(limits),
            other => panic!("{other:?} has no limits"),
        }
        event
    }

    /// Limits set for the incarnation created at `(lamport, origin)`.
    fn set_limits(
        (origin, seq, lamport): (&str, u64, u64),
        max_bytes: u64,
        created: (u64, &str),
    ) -> Event {
        let change = Change::SetLimits {
            topic: "news".into(),
            publisher: "P1".into(),
            limits: client::wire::TopicLimits {
                max_bytes: Some(max_bytes),
                ..Default::default()
            },
            created_lamport: created.0,
            created_origin: created.1.to_string(),
        };
        event(origin, seq, lamport, change)
    }

    #[test]
    fn a_topics_limits_are_its_incarnations_latest() {
        let first = (1, "A");
        let state = same_state_in_every_order(&[
            with_limits(create("A", 1, 1, "P1"), 5),
            set_limits(("B", 1, 3), 7, first),
            set_limits(("C", 1, 4), 9, first),
        ]);
        assert_eq!(state, [r#"news P1 0 {"max_bytes":9}"#]);
        let state = same_state_in_every_order(&[
            with_limits(create("A", 1, 1, "P1"), 5),
            set_limits(("B", 1, 3), 7, first),
            delete("A", 2, 5),
            with_limits(create("D", 1, 10, "P2"), 6),
        ]);
        assert_eq!(state, [r#"news P2 5 {"max_messages":6}"#]);
        // Limits set for the old incarnation, even stamped after the new
        // creation (by a broker that had not seen it), do not apply to it.
        let state = same_state_in_every_order(&[
            with_limits(create("A", 1, 1, "P1"), 5),
            delete("A", 2, 5),
            create("D", 1, 10, "P2"),
            set_limits(("B", 1, 11), 7, first),
            set_limits(("E", 1, 12), 8, (10, "D")),
        ]);
        assert_eq!(state, [r#"news P2 5 {"max_bytes":8}"#]);
        let state = same_state_in_every_order(&[
            delete("A", 2, 5),
            create("D", 1, 10, "P2"),
            set_limits(("B", 1, 11), 7, first),
        ]);
        assert_eq!(state, ["news P2 5"]);
    }

    fn seek(origin: &str, seq: u64, lamport: u64, positions: &[(&str, u64)]) -> Event {
        let change = Change::Seek {
            subscriber: "S1".into(),
            topic: "news".into(),
            positions: positions
                .iter()
                .map(|(origin, seq)| (origin.to_string(), *seq))
                .collect(),
        };
        event(origin, seq, lamport, change)
    }

    /// `event`, an acknowledgement or a lease, made after the seek stamped
    /// `(lamport, origin)`.
    fn after_seek(mut event: Event, (lamport, origin): (u64, &str)) -> Event {
        let made_in = Epoch {
            lamport,
            origin: origin.to_string(),
        };
        match &mut event.change {
            Change::Ack { epoch, .. }
            | Change::AckMessages { epoch, .. }
            | Change::Lease { epoch, .. } => *epoch = made_in,
            other => panic!("{other:?} has no epoch"),
        }
        event
    }

    fn subscribe_latest(origin: &str, seq: u64, lamport: u64) -> Event {
        let change = Change::Subscribe {
            subscriber: "S1".into(),
            topic: "news".into(),
            from: StartFrom::Latest,
            shared: None,
        };
        event(origin, seq, lamport, change)
    }

    #[test]
    fn a_seek_replaces_the_position_and_only_later_acknowledgements_count() {
        // Acknowledged before the seek, and concurrently without knowing
        // it: both void. After it (in its epoch): counted from its position.
        // The subscription started at "latest" now reads from the position.
        let state = same_state_in_every_order(&[
            subscribe_latest("A", 2, 2),
            ack("B", 1, 3, 5),
            seek("C", 1, 6, &[("A", 2)]),
            after_seek(ack("D", 1, 7, 4), (6, "C")),
            ack("B", 2, 8, 9),
            seek("E", 1, 5, &[("A", 1)]),
        ]);
        assert_eq!(state, ["S1 news 1", "S1 A 4 @6C", "seek S1 news @6C"]);
        // A later subscription record starts where it says again.
        let state = same_state_in_every_order(&[
            subscribe_latest("A", 2, 2),
            seek("C", 1, 6, &[("A", 2)]),
            subscribe_latest("B", 1, 7),
        ]);
        assert_eq!(
            state,
            ["S1 news 1 from 7B", "S1 A 2 @6C", "seek S1 news @6C"]
        );
    }

    #[test]
    fn a_seek_drops_earlier_acknowledgements_by_id_and_leases() {
        let state = same_state_in_every_order(&[
            ack_messages("B", 1, 3, &[("A", 7), ("A", 2)]),
            lease("B", 2, 4, 100, true),
            seek("C", 1, 6, &[]),
            after_seek(ack_messages("D", 1, 7, &[("A", 8)]), (6, "C")),
            after_seek(lease("D", 2, 8, 300, true), (6, "C")),
            after_seek(lease("B", 3, 9, 50, false), (6, "C")),
        ]);
        assert_eq!(
            state,
            [
                "seek S1 news @6C",
                "acked S1 news A 8 @6C",
                "lease S1 A 2 1 50 55 @6C"
            ]
        );
    }

    /// A message stored twice rolls back everything its transaction did,
    /// by the multi-row statement and by the one-row statement alike.
    #[test]
    fn a_message_stored_twice_rolls_back_its_whole_transaction() {
        for rows in [ROWS_PER_INSERT, 1] {
            let mut conn = Connection::open_in_memory().unwrap();
            schema::migrate(&mut conn).unwrap();
            apply(&conn, &publish("A", 1, 1, "first")).unwrap();
            conn.execute_batch("BEGIN").unwrap();
            apply(&conn, &publish("A", 2, 2, "second")).unwrap();
            let again: Vec<Event> = (1..=rows as u64)
                .map(|seq| publish("A", seq, seq, "again"))
                .collect();
            assert!(apply_run(&conn, &again).is_err(), "{rows} rows");
            assert!(conn.is_autocommit(), "{rows} rows: still in a transaction");
            let payloads: Vec<String> = conn
                .prepare("SELECT payload FROM messages ORDER BY seq")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(payloads, ["first"], "{rows} rows");
        }
    }
}
