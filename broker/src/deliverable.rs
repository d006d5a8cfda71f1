//! What pulls may deliver, and in which order, and the wake-ups that follow
//! when it moves on.
//!
//! In gossip mode everything a broker holds may be delivered, in `(lamport,
//! origin)` order, and the writer wakes a topic's pulls when it commits
//! messages of the topic. In leader mode only what a majority holds may,
//! in the order of the leads (`epochs`): this task recomputes the order
//! whenever its inputs change (what this broker holds, what peers hold,
//! the leader's commit vector, the leader, the leads, the mode) and wakes
//! only the pulls of topics with messages in the newly deliverable ranges,
//! so that idle pulls stay asleep through heartbeats. It also has a new
//! leader record its lead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::web;
use client::peer::{EventId, Have};

use crate::config::Mode;
use crate::epochs::{Epochs, Lead};
use crate::error::ApiError;
use crate::store::queries;
use crate::wakeups::Key;
use crate::{lock, AppState};

/// The current order: `None` in gossip mode (everything held, by stamp).
#[derive(Default)]
pub struct Deliverable {
    order: Mutex<Option<Arc<Epochs>>>,
    /// The term this broker recorded its lead for, and the store's mode
    /// version then (a lead is recorded again after the mode changes).
    lead_recorded: Mutex<Option<(u64, u64)>>,
    /// A task is recording this broker's lead.
    recording: AtomicBool,
    /// The leads' repeats this broker dropped since it started (see
    /// `drop_repeats`).
    repeats_dropped: Mutex<HashSet<EventId>>,
    /// One lead recorded at a time.
    one_lead: tokio::sync::Mutex<()>,
}

impl Deliverable {
    pub fn current(&self) -> Option<Arc<Epochs>> {
        lock(&self.order).clone()
    }

    /// Sets the order; returns the previous one.
    fn replace(&self, order: Option<Arc<Epochs>>) -> Option<Arc<Epochs>> {
        std::mem::replace(&mut *lock(&self.order), order)
    }
}

pub async fn run(app: web::Data<AppState>) {
    let mut have = app.store.watch_have();
    let mut peers = app.cluster.watch_peers();
    let mut leadership = app.cluster.watch_leadership();
    let mut shutdown = app.shutdown.clone();
    // The leads as of a version of the store's.
    let mut leads: Option<(u64, HashMap<EventId, Lead>)> = None;
    loop {
        // Enabled before the versions are compared, so no change is missed.
        let mode = app.wakeups.watch(Key::ModeChanged);
        let mut mode_changed = Box::pin(mode.notified());
        mode_changed.as_mut().enable();
        let new_leads = app.wakeups.watch(Key::LeadsChanged);
        let mut leads_changed = Box::pin(new_leads.notified());
        leads_changed.as_mut().enable();
        have.mark_unchanged();
        peers.mark_unchanged();
        leadership.mark_unchanged();
        // In gossip mode nothing but the mode matters: waking at every
        // commit cost the HTTP workers a task run per publish.
        let leader_mode = app.mode() == Mode::Leader;
        if leader_mode {
            let version = app.store.leads_version();
            if leads.as_ref().is_none_or(|(read, _)| *read != version) {
                leads = read_leads(&app).await.map(|read| (version, read));
            }
            if let Some((_, leads)) = &leads {
                if lead_falls_short(&app, leads) {
                    *lock(&app.deliverable.lead_recorded) = None;
                }
            }
            start_lead(&app);
        }
        let mut order = order_now(&app, leads.as_ref().map(|(_, leads)| leads)).map(Arc::new);
        if let Some(new) = &order {
            if let Err(error) = drop_repeats(&app, new).await {
                tracing::error!("cannot drop repeated messages: {error}");
                order = app.deliverable.current();
            }
        }
        // Set before waking, so that a woken pull reads the new order.
        let previous = app.deliverable.replace(order.clone());
        if previous != order {
            let limit = |order: Option<Arc<Epochs>>| order.map(|o| o.limit());
            wake_newly_deliverable(&app, limit(previous), limit(order)).await;
        }
        // An input whose sender is gone means the broker is stopping.
        let going_on = tokio::select! {
            changed = have.changed(), if leader_mode => changed.is_ok(),
            changed = peers.changed(), if leader_mode => changed.is_ok(),
            changed = leadership.changed(), if leader_mode => changed.is_ok(),
            () = mode_changed => true,
            () = leads_changed => true,
            _ = shutdown.changed() => false,
        };
        if !going_on {
            return;
        }
    }
}

async fn read_leads(app: &AppState) -> Option<HashMap<EventId, Lead>> {
    match app.store.read(|conn| Ok(queries::leads(conn)?)).await {
        Ok(leads) => Some(leads.into_iter().map(|l| (l.id.clone(), l)).collect()),
        Err(error) => {
            tracing::error!("cannot read the leads: {error}");
            None
        }
    }
}

/// What may be delivered now and in which order: `None` in gossip mode;
/// in leader mode the epochs of the current leader's latest committed
/// lead, and nothing while this broker lacks an event they deliver (or
/// knows no such lead yet).
fn order_now(app: &AppState, leads: Option<&HashMap<EventId, Lead>>) -> Option<Epochs> {
    if app.mode() != Mode::Leader {
        return None;
    }
    let nothing = Some(Epochs::default());
    let leadership = app.cluster.leadership();
    let (Some(leads), Some(leader)) = (leads, leadership.leader) else {
        return nothing;
    };
    let mine = app.store.have();
    let committed = if leader == app.cluster.me() {
        app.cluster.commit_vector(&mine)
    } else {
        app.cluster.leader_commit().unwrap_or_default()
    };
    // The last epoch holds only the leader's own events, in seq order: what
    // this broker holds of them is a prefix of the order (a follower that
    // lags the majority still delivers what it has).
    let own_committed = committed
        .get(&leader)
        .copied()
        .unwrap_or(0)
        .min(mine.get(&leader).copied().unwrap_or(0));
    let tip = latest_lead(leads, &leader, leadership.term, own_committed);
    let Some(epochs) = tip.and_then(|tip| Epochs::build(leads, &tip.id, own_committed)) else {
        return nothing;
    };
    let lacking = epochs
        .limit()
        .iter()
        .any(|(origin, seq)| mine.get(origin).copied().unwrap_or(0) < *seq);
    if lacking {
        nothing
    } else {
        Some(epochs)
    }
}

/// Drops the repeats the leads of `order` name (see `WriteTx::lead`)
/// before it becomes the current order, so that no pull ever sees them.
/// Every broker drops the same messages: the leader that recorded the lead
/// decided.
async fn drop_repeats(app: &AppState, order: &Epochs) -> Result<(), ApiError> {
    let new: Vec<EventId> = {
        let dropped = lock(&app.deliverable.repeats_dropped);
        order
            .repeats()
            .iter()
            .filter(|id| !dropped.contains(*id))
            .cloned()
            .collect()
    };
    if new.is_empty() {
        return Ok(());
    }
    let ids = new.clone();
    let dropped = app.store.write(move |tx| tx.drop_messages(&ids)).await?;
    if dropped > 0 {
        tracing::info!("dropped {dropped} repeated messages an earlier leader stored");
    }
    lock(&app.deliverable.repeats_dropped).extend(new);
    Ok(())
}

/// Whether this broker leads and a majority holds events of another origin
/// past its latest lead's base (a broker that took writes before it learnt
/// of leader mode): a new lead brings them into the order, after everything
/// ordered so far.
fn lead_falls_short(app: &AppState, leads: &HashMap<EventId, Lead>) -> bool {
    if !app.leads_in_order() {
        return false;
    }
    let me = app.cluster.me();
    let term = app.cluster.leadership().term;
    let Some(latest) = latest_lead(leads, me, term, u64::MAX) else {
        return false;
    };
    let majority = app.cluster.commit_vector(&app.store.have());
    majority
        .iter()
        .any(|(origin, &seq)| origin != me && seq > latest.base.get(origin).copied().unwrap_or(0))
}

/// The latest lead `leader` recorded in `term`, among those up to seq `upto`.
fn latest_lead<'l>(
    leads: &'l HashMap<EventId, Lead>,
    leader: &str,
    term: u64,
    upto: u64,
) -> Option<&'l Lead> {
    leads
        .values()
        .filter(|l| l.id.origin == leader && l.term == term && l.id.seq <= upto)
        .max_by_key(|l| l.id.seq)
}

/// A leader in leader mode that has not recorded its lead for this term
/// records it (in the background, one attempt at a time; the next input
/// change tries again after a failure).
fn start_lead(app: &web::Data<AppState>) {
    let term = app.cluster.leadership().term;
    if !app.leads_in_order()
        || app.lead_recorded(term)
        || app.deliverable.recording.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(error) = app.record_lead(term).await {
            tracing::debug!("cannot record the lead of term {term} yet: {error}");
        }
        app.deliverable.recording.store(false, Ordering::Release);
    });
}

impl AppState {
    /// Records this broker's lead for `term` unless it did since the mode
    /// last changed: once it may record events of its own and leads with a
    /// majority, holding everything a majority reported in this term.
    pub async fn record_lead(&self, term: u64) -> Result<(), ApiError> {
        if self.lead_recorded(term) {
            return Ok(());
        }
        let _one = self.deliverable.one_lead.lock().await;
        if self.lead_recorded(term) {
            return Ok(());
        }
        self.caught_up().await?;
        self.lead_with_quorum().await?;
        if self.cluster.leadership().term != term {
            return Err(ApiError::NoQuorum);
        }
        let mode_version = self.store.mode_version();
        let majority = self.cluster.commit_vector(&self.store.have());
        let window_ms = self.config.dedup_window_ms();
        self.store
            .write(move |tx| tx.lead(term, &majority, window_ms))
            .await?;
        *lock(&self.deliverable.lead_recorded) = Some((term, mode_version));
        tracing::info!("leading term {term}: lead recorded");
        Ok(())
    }

    /// Whether this broker recorded its lead for `term` since the mode
    /// last changed.
    fn lead_recorded(&self, term: u64) -> bool {
        *lock(&self.deliverable.lead_recorded) == Some((term, self.store.mode_version()))
    }
}

/// Wakes the pulls of every topic with messages between the `previous`
/// limit and the new one (`None`: everything held).
async fn wake_newly_deliverable(app: &AppState, previous: Option<Have>, limit: Option<Have>) {
    if !app.wakeups.watches_topics() {
        return;
    }
    let held = app.store.have();
    // Leader mode: a pull that read before the first order read nothing.
    let previous = match (previous, &limit) {
        (Some(previous), _) => previous,
        (None, Some(_)) => Have::new(),
        (None, None) => (*held).clone(),
    };
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
