//! The retention sweep: about once a second, deletes the messages that no
//! subscriber needs any more (see `WriteTx::sweep`).

use std::time::Duration;

use actix_web::web;

use crate::event::now_ms;
use crate::AppState;

/// Longest pause between sweeps.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest pause between sweeps, for tiny retention periods.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

pub async fn run(app: web::Data<AppState>) {
    let retention = app.config.retention;
    let every = (retention / 4).clamp(MIN_INTERVAL, MAX_INTERVAL);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut shutdown = app.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let cutoff_ms = now_ms().saturating_sub(retention_ms);
        match app.store.write(move |tx| tx.sweep(cutoff_ms)).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!("retention deleted {deleted} messages"),
            Err(error) => tracing::warn!("retention sweep failed: {error}"),
        }
    }
}
