//! One replicator per peer: pushes the events the peer lacks (its own `have`
//! comes back with every answer), at once when this broker records events
//! (after a large sync, up to 2 ms later; acknowledgements alone, up to
//! 20 ms later: see `gathering`) and every
//! heartbeat otherwise. The same exchange is the anti-entropy
//! (events of other origins are relayed when their own broker cannot
//! deliver them, see `relay`) and the heartbeat that tells liveness, term
//! and leader.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix_web::web;
use client::peer::{EncodedEvent, Have, SyncRequest};
use client::ClientError;

use super::gathering::{self, Gathering};
use super::relay::{lost_own_events, Relays};
use super::sizing::SyncSizing;
use super::{HEARTBEAT, PEER_TIMEOUT, RELAY_AFTER};
use crate::error::ApiError;
use crate::store::queries::SyncBudget;
use crate::wakeups::Key;
use crate::AppState;

/// Most events, and bytes of encoded events, one sync carries: well under
/// any broker's body limit (16 MiB at least); a peer that still refuses a
/// sync as too large gets less (see `sizing`). Only one sync is in flight
/// per peer, and the peer commits each in a transaction of its own: under
/// a steady load of batches, 5,000 events a sync replicate 7–22% faster
/// than 1,000 (the commits' and requests' own costs spread over more
/// events; 20,000 were no better than 5,000).
const BUDGET: SyncBudget = SyncBudget {
    events: 5000,
    bytes: 4 * 1024 * 1024,
};
/// Pauses after a failed sync: from the heartbeat up to this, short enough
/// that a peer gone silent is noticed soon after `DEAD_AFTER`.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub async fn run(app: web::Data<AppState>, peer: String) {
    let Some(client) = app.cluster.client(&peer) else {
        return;
    };
    // A broker that gains its first peer at run time sends what it records
    // from then on from memory too.
    app.store.keep_own_events();
    let mut shutdown = app.shutdown.clone();
    // What the peer holds; unknown until it first answers.
    let mut theirs: Option<Have> = None;
    let mut relays = Relays::new(RELAY_AFTER);
    // Whether the peer lost events it made: only then is it sent them.
    let mut peer_lost_own = false;
    let mut backoff = HEARTBEAT;
    let mut sizing = SyncSizing::new(BUDGET);
    let gathering = Gathering::new(app.config.max_replica_lag);
    // Ends when the peer is no longer a member.
    while app.cluster.knows(&peer) {
        let local = app.wakeups.watch(Key::LocalEvents);
        let mut recorded = Box::pin(local.notified());
        recorded.as_mut().enable();
        let acks = app.wakeups.watch(Key::LocalAcks);
        let mut acked = Box::pin(acks.notified());
        acked.as_mut().enable();
        let skip = left_out(&app, &peer, peer_lost_own, &mut relays);
        let budget = sizing.budget();
        // `mine`: what this broker held when it asked, unless the read failed.
        let (mine, request) = match sync_request(&app, theirs.as_ref(), &skip, budget).await {
            Ok((mine, request)) => (Some(mine), request),
            Err(error) => {
                tracing::error!("cannot read events for {peer}: {error}");
                let request = SyncRequest {
                    events: Vec::new(),
                    ..app.cluster.heartbeat()
                };
                (None, request)
            }
        };
        let sent = request.events.len();
        let filled = sent >= budget.events || encoded_bytes(&request) >= budget.bytes;
        // Whether the peer refused even one event as too large: new events
        // do not make it any smaller, so they do not cut the pause short.
        let mut refused_alone = false;
        let pause = match client.sync(&request, PEER_TIMEOUT).await {
            Ok(answer) => {
                app.cluster
                    .heard_from(&peer, answer.term, answer.leader.clone());
                let progressed = theirs.as_ref() != Some(&answer.have);
                // Whether this answer shows the peer lost its own events.
                let mut lost_now = false;
                if let Some(mine) = &mine {
                    relays.observe(mine, &answer.have, Instant::now());
                    let lost = lost_own_events(&peer, mine, &answer.have);
                    lost_now = lost && !peer_lost_own;
                    peer_lost_own = lost;
                }
                let held = (answer.have.clone(), answer.synced);
                app.cluster
                    .peer_holds(&peer, held, answer.term, peer_lost_own);
                app.check_own_history();
                theirs = Some(answer.have);
                backoff = HEARTBEAT;
                sizing.taken(sent);
                if lost_now {
                    continue; // it is sent its own events back at once
                }
                if sent > 0 && progressed {
                    // More may be missing: keep streaming, after gathering
                    // more when this sync was large.
                    if let Some(linger) = gathering.linger(app.mode(), sent, filled) {
                        let more = More::Events;
                        let gathered =
                            gather(&app, &gathering, theirs.as_ref(), &skip, linger, more);
                        if !gathered.await {
                            return;
                        }
                    }
                    continue;
                }
                HEARTBEAT
            }
            Err(ClientError::Api { status: 413, .. }) if budget.events > 1 => {
                sizing.refused(encoded_bytes(&request));
                tracing::warn!("{peer} refused a sync as too large; sending less");
                continue;
            }
            Err(ClientError::Api { status: 413, .. }) => {
                // One event over the peer's body limit (a peer with a
                // lower --max-payload-bytes): it cannot take it, however
                // often it is sent, so it is sent again at the pace of a
                // failure, not at once.
                refused_alone = true;
                backoff = longer(backoff);
                tracing::error!(
                    "{peer} refuses an event as too large for its body limit; \
                     trying again in {backoff:?}"
                );
                backoff
            }
            Err(error) => {
                log_failure(&peer, &error);
                app.cluster.failed(&peer);
                theirs = None;
                relays = Relays::new(RELAY_AFTER);
                peer_lost_own = false;
                sizing.failed();
                backoff = longer(backoff);
                backoff
            }
        };
        tokio::select! {
            _ = recorded, if !refused_alone => {}
            _ = acked, if !refused_alone => {
                if let Some(linger) = gathering.ack_linger(app.mode()) {
                    let more = More::Acks;
                    if !gather(&app, &gathering, theirs.as_ref(), &skip, linger, more).await {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What a replicator gathers before its next sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum More {
    /// Events of any kind, after a large sync.
    Events,
    /// Acknowledgements, after this broker recorded nothing else since
    /// the replicator had nothing to send: the peer lacking any other own
    /// event ends the wait.
    Acks,
}

/// Waits up to `linger` for this broker to record `more` events, or until
/// the peer (holding `theirs`) lacks enough of those it is sent (or, for
/// acknowledgements, any other own event): checked when this broker
/// records events, so a backlog of other origins' events alone waits the
/// whole `linger`. False on shutdown.
async fn gather(
    app: &AppState,
    gathering: &Gathering,
    theirs: Option<&Have>,
    skip: &HashSet<String>,
    linger: Duration,
    more: More,
) -> bool {
    let mut shutdown = app.shutdown.clone();
    let deadline = tokio::time::Instant::now() + linger;
    loop {
        let local = app.wakeups.watch(Key::LocalEvents);
        let mut recorded = Box::pin(local.notified());
        recorded.as_mut().enable();
        let acks = app.wakeups.watch(Key::LocalAcks);
        let mut acked = Box::pin(acks.notified());
        acked.as_mut().enable();
        if gathering.lacks_enough(gathering::lacking(theirs, &app.store.have(), skip)) {
            return true;
        }
        if more == More::Acks && ends_ack_wait(app, gathering, theirs) {
            return true;
        }
        // An own event besides acknowledgements, woken for here, ends a
        // wait for acknowledgements through `ends_ack_wait` above.
        tokio::select! {
            _ = recorded => {}
            _ = acked => {}
            _ = tokio::time::sleep_until(deadline) => return true,
            _ = shutdown.changed() => return false,
        }
    }
}

/// Whether a wait for more acknowledgements ends now (see
/// `Gathering::ends_ack_wait`): checked after the wait's wake-ups are
/// armed, so an event committed meanwhile is seen by one or the other.
fn ends_ack_wait(app: &AppState, gathering: &Gathering, theirs: Option<&Have>) -> bool {
    let theirs_own = theirs.map(|have| have.get(app.cluster.me()).copied().unwrap_or(0));
    gathering.ends_ack_wait(app.mode(), theirs_own, app.store.own_seq_besides_acks())
}

/// The bytes of a sync's encoded events: what its budget counts.
fn encoded_bytes(request: &SyncRequest<EncodedEvent>) -> usize {
    request.events.iter().map(|event| event.json().len()).sum()
}

/// The pause after another failure.
fn longer(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// The origins whose events this sync to `peer` leaves out: the live peers
/// other than `peer`, unless `peer` has lacked their events too long (they
/// are left to their own broker); and `peer` itself, unless it `lost_own`
/// events.
fn left_out(app: &AppState, peer: &str, lost_own: bool, relays: &mut Relays) -> HashSet<String> {
    let now = Instant::now();
    let others = app
        .cluster
        .members()
        .into_iter()
        .filter(|member| member.alive && member.id != app.cluster.me() && member.id != peer)
        .filter(|member| !relays.relay(&member.id, now))
        .map(|member| member.id);
    let itself = (!lost_own).then(|| peer.to_string());
    others.chain(itself).collect()
}

/// What this broker holds, and the sync to send: the events the peer
/// lacks but those of the origins in `skip`, when we know what it holds.
async fn sync_request(
    app: &web::Data<AppState>,
    theirs: Option<&Have>,
    skip: &HashSet<String>,
    budget: SyncBudget,
) -> Result<(Have, SyncRequest<EncodedEvent>), ApiError> {
    let mine = app.store.have();
    let events = match theirs {
        Some(theirs) if gathering::lacking(Some(theirs), &mine, skip) > 0 => {
            app.store
                .missing(mine.clone(), theirs.clone(), skip.clone(), budget)
                .await?
        }
        _ => Vec::new(),
    };
    let mine = (*mine).clone();
    let committed = app
        .leads_in_order()
        .then(|| app.cluster.commit_vector(&mine));
    let request = SyncRequest {
        events,
        committed,
        ..app.cluster.heartbeat()
    };
    Ok((mine, request))
}

fn log_failure(peer: &str, error: &ClientError) {
    if error.is_unreachable() {
        tracing::debug!("sync with {peer} failed: {error}");
    } else {
        tracing::warn!("sync with {peer} failed: {error}");
    }
}
