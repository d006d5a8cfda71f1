//! What pulls may deliver, per origin, and the wake-ups that follow when it
//! moves on. In gossip mode everything a broker holds may be delivered and
//! the writer wakes a topic's pulls when it commits messages of the topic.
//! In leader mode only what a majority holds may (see
//! `AppState::deliverable_now`): this task recomputes that limit whenever
//! its inputs change (what this broker holds, what peers hold, the
//! leader's commit vector, the leader, the mode) and wakes only the pulls
//! of topics with messages in the newly deliverable ranges, so that idle
//! pulls stay asleep through heartbeats.

use std::sync::Mutex;

use actix_web::web;
use client::peer::Have;

use crate::store::queries;
use crate::wakeups::Key;
use crate::{lock, AppState};

/// The current limit: `None` for everything held (gossip mode).
#[derive(Default)]
pub struct Deliverable(Mutex<Option<Have>>);

impl Deliverable {
    pub fn current(&self) -> Option<Have> {
        lock(&self.0).clone()
    }

    /// Sets the limit; returns the previous one.
    fn replace(&self, limit: Option<Have>) -> Option<Have> {
        std::mem::replace(&mut *lock(&self.0), limit)
    }
}

pub async fn run(app: web::Data<AppState>) {
    let mut have = app.store.watch_have();
    let mut peers = app.cluster.watch_peers();
    let mut leadership = app.cluster.watch_leadership();
    let mut shutdown = app.shutdown.clone();
    loop {
        let mode = app.wakeups.watch(Key::ModeChanged);
        let mut mode_changed = Box::pin(mode.notified());
        mode_changed.as_mut().enable();
        have.mark_unchanged();
        peers.mark_unchanged();
        leadership.mark_unchanged();
        // Set before waking, so that a woken pull reads the new limit.
        let limit = app.deliverable_now();
        let previous = app.deliverable.replace(limit.clone());
        if previous != limit {
            wake_newly_deliverable(&app, previous, limit).await;
        }
        // An input whose sender is gone means the broker is stopping.
        let going_on = tokio::select! {
            changed = have.changed() => changed.is_ok(),
            changed = peers.changed() => changed.is_ok(),
            changed = leadership.changed() => changed.is_ok(),
            () = mode_changed => true,
            _ = shutdown.changed() => false,
        };
        if !going_on {
            return;
        }
    }
}

/// Wakes the pulls of every topic with messages between the `previous`
/// limit and the new one (`None`: everything held).
async fn wake_newly_deliverable(app: &AppState, previous: Option<Have>, limit: Option<Have>) {
    if !app.wakeups.watches_topics() {
        return;
    }
    let held = app.store.have();
    let previous = previous.unwrap_or_else(|| (*held).clone());
    let limit = limit.unwrap_or_else(|| (*held).clone());
    let ranges: Vec<(String, u64, u64)> = limit
        .into_iter()
        .filter_map(|(origin, upto)| {
            let from = previous.get(&origin).copied().unwrap_or(0);
            (upto > from).then_some((origin, from, upto))
        })
        .collect();
    if ranges.is_empty() {
        return;
    }
    match app
        .store
        .read(move |conn| Ok(queries::topics_with_messages_in(conn, &ranges)?))
        .await
    {
        Ok(topics) => {
            for topic in topics {
                app.wakeups.wake(&Key::Topic(topic));
            }
        }
        Err(error) => tracing::error!("cannot tell which topics to wake: {error}"),
    }
}
