//! The retention sweep: about once a second, deletes the messages that no
//! subscriber needs any more (see `WriteTx::sweep`), in bounded steps so
//! that publishes are never held up behind a large deletion.

use std::time::Duration;

use actix_web::web;

use crate::event::now_ms;
use crate::store::SweepTimes;
use crate::AppState;

/// Longest pause between sweeps.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest pause between sweeps, for tiny retention periods.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Most messages one sweep step deletes, and looks at for expiry. A step
/// is one job of the writer, so the publishes committed with it wait for
/// it: a step of 500 took 1.2–2.4 ms at 3,000 acknowledged messages a
/// second, one of 10,000 took 9–10 ms, so steps are kept to about 1 ms.
const STEP: u32 = 256;

pub async fn run(app: web::Data<AppState>) {
    let retention = app.config.retention;
    let every = (retention / 4).clamp(MIN_INTERVAL, MAX_INTERVAL);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut shutdown = app.shutdown.clone();
    let mut resume = None;
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
        let now = now_ms();
        let times = SweepTimes {
            now_ms: now,
            expire_before_ms: now.saturating_sub(retention_ms),
            // Kept twice the window: a leader-mode lead that brings an old
            // leader's copy in late measures it against the copies' own
            // times, up to a window after its repeat (see `WriteTx::lead`).
            forget_ids_before_ms: now
                .saturating_sub(app.config.dedup_window_ms().saturating_mul(2)),
        };
        let replicated = app.cluster.replicated();
        match app
            .store
            .write(move |tx| tx.sweep(times, replicated.as_ref(), resume, STEP))
            .await
        {
            Ok(swept) => {
                if swept.deleted > 0 {
                    tracing::debug!("retention deleted {} messages", swept.deleted);
                }
                (more, resume) = (swept.more, swept.resume);
            }
            Err(error) => {
                tracing::warn!("retention sweep failed: {error}");
                (more, resume) = (false, None);
            }
        }
    }
}
