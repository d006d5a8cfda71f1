//! Connection settings and the migrations in `migrations/`, embedded at build time.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{Migrations, M};

use crate::config::Durability;

/// The numbered files of `migrations/`, in order. Append; never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_event_log.sql"),
    include_str!("../../../migrations/0002_settings.sql"),
    include_str!("../../../migrations/0003_members.sql"),
    include_str!("../../../migrations/0004_fewer_message_indexes.sql"),
    include_str!("../../../migrations/0005_leads.sql"),
    include_str!("../../../migrations/0006_message_headers.sql"),
    include_str!("../../../migrations/0007_message_acks.sql"),
    include_str!("../../../migrations/0008_shared_subscriptions.sql"),
    include_str!("../../../migrations/0009_leases.sql"),
    include_str!("../../../migrations/0010_leases_by_eligible.sql"),
    include_str!("../../../migrations/0011_topic_limits.sql"),
    include_str!("../../../migrations/0012_seeks.sql"),
    include_str!("../../../migrations/0013_msg_ids.sql"),
    include_str!("../../../migrations/0014_lead_repeats.sql"),
    include_str!("../../../migrations/0015_message_keys.sql"),
];

/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// The writer's page cache, in KiB (negative: SQLite's unit for KiB): the
/// indexes a publish touches stay in memory.
const WRITER_CACHE_KIB: i64 = -65_536;

/// Pages the write-ahead log grows by before a commit copies it back into
/// the database (SQLite's default is 1,000): the bound on the log's size.
/// The checkpoint thread (`checkpoint`) copies most of it before then, so
/// that the commit which runs this checkpoint, and every write behind it,
/// stalls only for what is left.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
}

pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    migrations()
        .to_latest(conn)
        .map_err(|e| format!("migrating the database failed: {e}"))
}

/// WAL (readable by `sqlite3` while the broker runs) and the durability asked for.
pub fn configure_writer(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous(durability))?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
    // Sorts and temporary indexes in memory, not in temp files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    Ok(())
}

/// The checkpoint thread's connection to the database the writer made (see
/// `checkpoint`): it syncs what it copies as the writer would.
pub fn open_checkpointer(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.pragma_update(None, "synchronous", synchronous(durability))?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
    Ok(conn)
}

/// Copies what the write-ahead log holds back into the database, as far as
/// no reader still needs it, without waiting for any lock.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// How long the last checkpoint, at a clean stop, waits for readers.
const LAST_CHECKPOINT_WAIT: Duration = Duration::from_secs(1);

/// Copies everything the write-ahead log holds back into the database and
/// empties the log, waiting up to `LAST_CHECKPOINT_WAIT` for readers; says
/// whether it could (not while another connection, a reader or a
/// checkpoint under way, still uses the log).
pub fn checkpoint_all(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(LAST_CHECKPOINT_WAIT)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok(busy == 0)
}

fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::Fsync => "FULL",
        Durability::Normal => "NORMAL",
    }
}

pub fn configure_reader(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn messages_stored_with_text_keys_are_kept_under_integer_ones() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations()
            .to_version(&mut conn, MIGRATIONS.len() - 1)
            .unwrap();
        let rows = [
            r#"('A:1', 7, 12, 't', 'p', 'payload', 1000, '{"k":"v"}', 'm-1')"#,
            // An origin named like the other message's topic: one id.
            "('t', 3, 9, 'u', 'q', 'other', 2000, NULL, NULL)",
        ];
        for row in rows {
            conn.execute_batch(&format!("INSERT INTO messages VALUES {row}"))
                .unwrap();
        }

        migrate(&mut conn).unwrap();

        let kept: Vec<String> = conn
            .prepare(
                "SELECT format('(%Q, %d, %d, %Q, %Q, %Q, %d, %Q, %Q)', origin, seq, lamport,
                     topic, publisher, payload, published_at_ms, headers, msg_id)
                 FROM messages ORDER BY origin",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, rows.to_vec());
        let again = "INSERT INTO message_rows
                         SELECT o.id, 7, 13, t.id, 'p', 'again', 3000, NULL, NULL
                         FROM names o, names t WHERE o.name = 'A:1' AND t.name = 't'";
        let Err(rusqlite::Error::SqliteFailure(error, _)) = conn.execute_batch(again) else {
            panic!("a second message A:1 7 was stored");
        };
        assert_eq!(
            error.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        );
        let names: i64 = conn
            .query_row("SELECT count(*) FROM names", [], |row| row.get(0))
            .unwrap();
        assert_eq!(names, 3, "A:1, t and u");
    }
}
