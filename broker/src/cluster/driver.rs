//! The election task: owns the bully state machine, feeds it inputs (peer
//! messages, heartbeats, failures, clock ticks), sends what it says to send,
//! and publishes the term and leader.

use std::time::{Duration, Instant};

use actix_web::web;
use client::peer::{ElectionKind, ElectionMessage};

use super::election::{Election, Input, Message, Send};
use super::{ElectionParts, Leadership, ELECTION_TIMEOUT, PEER_TIMEOUT};
use crate::AppState;

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

pub async fn run(app: web::Data<AppState>, parts: ElectionParts) {
    let ElectionParts {
        mut inputs,
        leadership,
    } = parts;
    let cluster = &app.cluster;
    let peers = cluster.peers().iter().map(|p| p.id()).collect();
    let mut election = Election::new(cluster.me.clone(), peers, ELECTION_TIMEOUT);
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(TICK);
    let mut input = Input::Start;
    loop {
        for send in election.step(Instant::now(), input) {
            deliver(&app, send);
        }
        leadership.send_if_modified(|known| {
            let now = Leadership {
                term: election.term(),
                leader: election.leader().map(str::to_string),
            };
            if *known == now {
                return false;
            }
            tracing::info!("leader {:?} in term {}", now.leader, now.term);
            if now.leader.as_deref() == Some(cluster.me.as_str()) {
                note_members(&app);
            }
            *known = now;
            true
        });
        input = tokio::select! {
            Some(input) = inputs.recv() => input,
            _ = tick.tick() => Input::Tick,
            _ = shutdown.changed() => return,
        };
    }
}

/// A new leader records the seed members as events, so that brokers that
/// join later learn every member; once it holds its own history, like
/// every event of its own.
fn note_members(app: &web::Data<AppState>) {
    let app = app.clone();
    tokio::spawn(async move {
        app.store.until_own_history().await;
        let mut brokers = app.cluster.peers();
        brokers.push(app.config.me());
        if let Err(error) = app.store.write(move |tx| tx.note_members(&brokers)).await {
            tracing::warn!("cannot record the members: {error}");
        }
    });
}

/// Sends one election message in the background; a peer that cannot be
/// reached is reported down to the election.
fn deliver(app: &web::Data<AppState>, send: Send) {
    let app = app.clone();
    tokio::spawn(async move {
        let Some(client) = app.cluster.client(&send.to) else {
            return;
        };
        let message = ElectionMessage {
            from: app.cluster.me.clone(),
            kind: kind(send.message),
            term: send.term,
        };
        if client.election(&message, PEER_TIMEOUT).await.is_err() {
            app.cluster.feed(Input::PeerDown { peer: send.to });
        }
    });
}

fn kind(message: Message) -> ElectionKind {
    match message {
        Message::Election => ElectionKind::Election,
        Message::Answer => ElectionKind::Answer,
        Message::Coordinator => ElectionKind::Coordinator,
    }
}

/// An election message received from a peer, as the state machine's input.
pub fn received(message: ElectionMessage) -> Input {
    let kind = match message.kind {
        ElectionKind::Election => Message::Election,
        ElectionKind::Answer => Message::Answer,
        ElectionKind::Coordinator => Message::Coordinator,
    };
    Input::Received {
        from: message.from,
        message: kind,
        term: message.term,
    }
}
