//! Storage: the only module that knows SQL.
//!
//! One writer thread owns the write connection and commits everything queued
//! in one transaction (group commit, see `writer`); reads run on an r2d2 pool
//! of read-only connections on the blocking thread pool, never on the async
//! executor. `apply` holds the event merges, `ops` the checked operations
//! that turn requests into events, `queries` the reads.

mod apply;
mod ops;
pub mod queries;
mod schema;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::config::{Config, Durability};
use crate::error::ApiError;
use crate::wakeups::Wakeups;

pub use writer::WriteTx;

/// Read connections: enough for concurrent pulls on a small machine.
const READ_POOL_SIZE: u32 = 8;

/// The broker's SQLite database.
pub struct Store {
    pool: r2d2::Pool<SqliteConnectionManager>,
    writer: writer::Writer,
    lamport: Arc<AtomicU64>,
}

impl Store {
    /// Opens (creating and migrating when needed) `<data_dir>/broker.db`.
    pub fn open(config: &Config, wakeups: Arc<Wakeups>) -> Result<Store, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let path = config.data_dir.join("broker.db");
        let conn = open_writer(&path, config.durability)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let state = writer::WriterState::load(&conn, &config.id)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lamport = Arc::new(AtomicU64::new(state.lamport()));
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(schema::configure_reader);
        let pool = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .build(manager)
            .map_err(|e| format!("cannot open read connections to {}: {e}", path.display()))?;
        let writer = writer::Writer::start(conn, state, wakeups, lamport.clone());
        Ok(Store {
            pool,
            writer,
            lamport,
        })
    }

    /// The Lamport clock as of the last commit.
    pub fn lamport(&self) -> u64 {
        self.lamport.load(Ordering::Acquire)
    }

    /// Runs a read on a pooled connection, off the async executor.
    pub async fn read<T, F>(&self, read: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || read(&*pool.get()?))
            .await
            .map_err(|e| ApiError::Internal(format!("read task failed: {e}")))?
    }

    /// Queues a change for the writer and waits until it is committed
    /// (durably, under `--durability fsync`) or refused.
    pub async fn write<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.writer.submit(change).await
    }

    /// Commits what is queued and stops the writer thread.
    pub fn close(&self) {
        self.writer.stop();
    }
}

fn open_writer(path: &Path, durability: Durability) -> Result<Connection, String> {
    let mut conn = Connection::open(path).map_err(|e| e.to_string())?;
    schema::configure_writer(&conn, durability).map_err(|e| e.to_string())?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}
