//! Checkpoints of the write-ahead log on a thread of their own.
//!
//! A checkpoint copies the log's pages back into `broker.db` and fsyncs
//! it. Run by the writer (SQLite's automatic checkpoint at the end of a
//! commit) it stalls every write queued behind that commit, and under
//! batches it was about a sixth of the writer's time. This thread takes it
//! off the writer: every `EVERY` after a commit it copies, without
//! waiting for any lock (`PASSIVE`), what the log holds. The writer keeps
//! its automatic checkpoint as the bound on the log's size: when it comes
//! due, little is left to copy, and once a checkpoint has copied the whole
//! log the next commit starts it from the beginning again.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use client::peer::Have;

use super::schema;
use crate::config::Durability;
use crate::lock;

/// How often the log is copied back while writes go on: its pages at
/// 800,000 messages a second are a few thousand by then.
const EVERY: Duration = Duration::from_millis(100);

/// Handle to the checkpoint thread; stops it when told or dropped.
pub struct Checkpointer {
    stopped: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread;
    /// `have` moves with every commit that wrote events.
    pub fn start(
        path: &Path,
        durability: Durability,
        have: watch::Receiver<Arc<Have>>,
    ) -> Result<Checkpointer, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        schema::configure_checkpointer(&conn, durability).map_err(|e| e.to_string())?;
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stopped.clone();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".to_string())
            .spawn(move || run(&conn, have, &signal))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            stopped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread (a checkpoint under way finishes first).
    pub fn stop(&self) {
        let (stopped, wake) = &*self.stopped;
        *lock(stopped) = true;
        wake.notify_all();
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, mut have: watch::Receiver<Arc<Have>>, stopped: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stopped;
    let mut done = lock(stopped);
    while !*done {
        done = wake
            .wait_timeout(done, EVERY)
            .map(|(done, _)| done)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        if *done || !have.has_changed().unwrap_or(false) {
            continue;
        }
        have.borrow_and_update();
        drop(done);
        if let Err(error) = schema::checkpoint(conn) {
            tracing::warn!("checkpoint failed (the writer's own will copy the log): {error}");
        }
        done = lock(stopped);
    }
}
