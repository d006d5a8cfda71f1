//! Checkpoints of the write-ahead log on a thread of their own.
//!
//! A checkpoint copies the log's pages back into `broker.db` and fsyncs
//! it. Run by the writer (SQLite's automatic checkpoint at the end of a
//! commit) it stalls every write queued behind that commit, and under
//! batches it was about a sixth of the writer's time. This thread takes it
//! off the writer: every `EVERY`, when the writer committed since, it
//! copies what the log holds without waiting for any lock (`PASSIVE`). The
//! writer keeps its automatic checkpoint as the bound on the log's size:
//! when it comes due, little is left to copy, and once a checkpoint has
//! copied the whole log (and no reader still reads from it) the next
//! commit starts the log from the beginning again.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema;
use crate::config::Durability;
use crate::lock;

/// How often the log is copied back while writes go on: its pages at
/// 800,000 messages a second are a few thousand by then.
const EVERY: Duration = Duration::from_millis(100);

/// Handle to the checkpoint thread.
pub struct Checkpointer {
    stopped: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread;
    /// `committed` counts the writer's commits.
    pub fn start(
        path: &Path,
        durability: Durability,
        committed: Arc<AtomicU64>,
    ) -> Result<Checkpointer, String> {
        let conn = schema::open_checkpointer(path, durability).map_err(|e| e.to_string())?;
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stopped.clone();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".to_string())
            .spawn(move || run(&conn, &committed, &signal))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            stopped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it (a checkpoint under way finishes
    /// first).
    pub fn stop(&self) {
        self.tell_to_stop();
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }

    fn tell_to_stop(&self) {
        let (stopped, wake) = &*self.stopped;
        *lock(stopped) = true;
        wake.notify_all();
    }
}

impl Drop for Checkpointer {
    /// Without waiting: the store may be dropped on an async thread.
    fn drop(&mut self) {
        self.tell_to_stop();
    }
}

fn run(conn: &Connection, committed: &AtomicU64, stopped: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stopped;
    let mut copied_up_to = 0;
    // Whether the last checkpoint failed: a lasting failure is told once.
    let mut failing = false;
    let mut done = lock(stopped);
    while !*done {
        done = wake
            .wait_timeout(done, EVERY)
            .map(|(done, _)| done)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        let commits = committed.load(Ordering::Acquire);
        if *done || commits == copied_up_to {
            continue;
        }
        drop(done);
        match schema::checkpoint(conn) {
            Ok(()) => {
                copied_up_to = commits;
                failing = false;
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!("checkpoint failed (the writer's own will copy the log): {error}");
            }
            Err(_) => {}
        }
        done = lock(stopped);
    }
}
