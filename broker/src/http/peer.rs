//! `/peer/*`: the brokers' own protocol (see `cluster`).

use actix_web::{web, HttpResponse};
use client::peer::{ElectionMessage, Epoch, EventId, SyncRequest, SyncResponse};

use super::body::Body;
use crate::clock::within_reach;
use crate::cluster::received_election;
use crate::config::Mode;
use crate::error::ApiError;
use crate::event::{Change, Event, MAX_STAMP};
use crate::names::{is_broker_id, is_valid_name};
use crate::AppState;

/// Applies the events a peer sent and answers with what this broker holds.
pub async fn sync(
    app: web::Data<AppState>,
    body: Body<SyncRequest>,
) -> Result<HttpResponse, ApiError> {
    let SyncRequest {
        from,
        term,
        leader,
        events,
        committed,
    } = body.into_inner();
    check_peer(&app, &from)?;
    app.metrics.count_peer_sync(events.len());
    check_term(&app, &from, term)?;
    let own_lamport = app.store.lamport();
    let mut checked = Checked::default();
    for event in &events {
        check_event(event, own_lamport, &mut checked).inspect_err(|error| {
            tracing::warn!("refused a sync from {from}: {error}");
        })?;
    }
    let deposed = is_deposed_leader(&app, &from, term, leader.as_deref());
    app.cluster.heard_from(&from, term, leader);
    // A leader in leader mode (it sends what it committed) counts this
    // broker's answer for its majority, which must be on disk, also while
    // this broker has not heard of leader mode yet. (The writer syncs on
    // its own what else must be: see `WriterThread::make_durable`.)
    let have = if events.is_empty() || deposed {
        (*app.store.have()).clone()
    } else if committed.is_some() {
        app.store.write(move |tx| tx.receive(events)).await?
    } else {
        app.store
            .write_received(move |tx| tx.receive(events))
            .await?
    };
    // After the events it came with, so that this broker holds them first.
    if let Some(committed) = committed {
        app.cluster.leader_committed(&from, term, committed);
    }
    let leadership = app.cluster.leadership();
    Ok(HttpResponse::Ok().json(SyncResponse {
        from: app.cluster.me().to_string(),
        term: leadership.term,
        leader: leadership.leader,
        have,
        synced: Some((*app.store.synced_have()).clone()),
    }))
}

/// Leader mode fences a leader of an older term: its events are not taken
/// (so it cannot gather acknowledgements) until it has stepped down.
fn is_deposed_leader(app: &AppState, from: &str, term: u64, leader: Option<&str>) -> bool {
    app.mode() == Mode::Leader && leader == Some(from) && term < app.cluster.leadership().term
}

/// Hands a bully election message to the election.
pub async fn election(
    app: web::Data<AppState>,
    body: Body<ElectionMessage>,
) -> Result<HttpResponse, ApiError> {
    let message = body.into_inner();
    check_peer(&app, &message.from)?;
    check_term(&app, &message.from, message.term)?;
    app.cluster.feed(received_election(message));
    Ok(HttpResponse::NoContent().finish())
}

/// The names a sync's earlier events showed valid. Most syncs are runs of
/// publishes from one origin to one topic: their names are checked once,
/// not per event (a replica spent about a tenth of its request handling on
/// checking them again).
#[derive(Default)]
struct Checked<'a> {
    origin: Option<&'a str>,
    publish: Option<(&'a str, &'a str)>,
}

impl<'a> Checked<'a> {
    fn origin(&mut self, origin: &'a str) -> bool {
        remember_if(&mut self.origin, origin, is_broker_id)
    }

    fn publish(&mut self, topic: &'a str, publisher: &'a str) -> bool {
        remember_if(
            &mut self.publish,
            (topic, publisher),
            |(topic, publisher)| is_valid_name(topic) && is_valid_name(publisher),
        )
    }
}

/// Whether `valid(value)`, asked only when `value` is not the one last
/// found valid (kept in `last`).
fn remember_if<T: PartialEq + Copy>(
    last: &mut Option<T>,
    value: T,
    valid: impl Fn(T) -> bool,
) -> bool {
    if *last == Some(value) {
        return true;
    }
    let is_valid = valid(value);
    if is_valid {
        *last = Some(value);
    }
    is_valid
}

/// Refuses an event no broker could have made: seq out of range, a stamp
/// out of range or too far above this broker's clock (`own_lamport`, see
/// `clock::REACH`), or names outside the rules (`checked`: the names the
/// sync's earlier events showed valid).
fn check_event<'a>(
    event: &'a Event,
    own_lamport: u64,
    checked: &mut Checked<'a>,
) -> Result<(), ApiError> {
    const MAX: u64 = i64::MAX as u64; // SQLite integers
    let names_ok = match &event.change {
        Change::RegisterPublisher { publisher: name }
        | Change::RegisterSubscriber { subscriber: name } => is_valid_name(name),
        Change::SetLimits {
            topic,
            publisher,
            created_lamport,
            created_origin,
            ..
        } => {
            is_valid_name(topic)
                && is_valid_name(publisher)
                && *created_lamport <= MAX_STAMP
                && is_broker_id(created_origin)
        }
        Change::CreateTopic {
            topic, publisher, ..
        }
        | Change::DeleteTopic { topic, publisher } => {
            is_valid_name(topic) && is_valid_name(publisher)
        }
        Change::Publish {
            topic, publisher, ..
        } => checked.publish(topic, publisher),
        Change::Subscribe {
            subscriber,
            topic,
            shared,
            ..
        } => {
            is_valid_name(subscriber)
                && is_valid_name(topic)
                && shared.as_ref().is_none_or(|shared| {
                    shared
                        .dead_letter_topic
                        .as_deref()
                        .is_none_or(is_valid_name)
                })
        }
        Change::Unsubscribe { subscriber, topic } => {
            is_valid_name(subscriber) && is_valid_name(topic)
        }
        Change::Ack {
            subscriber,
            topic,
            acked_origin,
            acked_seq,
            epoch,
        } => {
            is_valid_name(subscriber)
                && is_valid_name(topic)
                && is_broker_id(acked_origin)
                && *acked_seq <= MAX
                && valid_epoch(epoch)
        }
        Change::AckMessages {
            subscriber,
            topic,
            ids,
            epoch,
        }
        | Change::Lease {
            subscriber,
            topic,
            ids,
            epoch,
            ..
        } => {
            is_valid_name(subscriber)
                && is_valid_name(topic)
                && valid_epoch(epoch)
                && ids
                    .iter()
                    .all(|id| is_broker_id(&id.origin) && (1..=MAX).contains(&id.seq))
        }
        Change::Seek {
            subscriber,
            topic,
            positions,
        } => {
            is_valid_name(subscriber)
                && is_valid_name(topic)
                && positions
                    .iter()
                    .all(|(origin, seq)| is_broker_id(origin) && *seq <= MAX)
        }
        Change::SetMode { mode } => Mode::parse(mode).is_some(),
        Change::AddMember { host, port } => *port != 0 && is_broker_id(&format!("{host}:{port}")),
        Change::RemoveMember { member } => is_broker_id(member),
        Change::Lead {
            term,
            prev,
            base,
            repeats,
        } => {
            let is_event = |id: &EventId| is_broker_id(&id.origin) && id.seq <= MAX;
            *term <= MAX_STAMP
                && prev.as_ref().is_none_or(is_event)
                && base
                    .iter()
                    .all(|(origin, seq)| is_broker_id(origin) && *seq <= MAX)
                && repeats.iter().all(is_event)
        }
        Change::Pruned => true,
    };
    let in_range = (1..=MAX).contains(&event.seq) && event.lamport <= MAX_STAMP;
    if !(names_ok && in_range && checked.origin(&event.origin)) {
        return Err(ApiError::BadRequest(format!(
            "invalid event {}/{}",
            event.origin, event.seq
        )));
    }
    if !within_reach(event.lamport, own_lamport) {
        return Err(ApiError::BadRequest(format!(
            "event {}/{} is stamped {}, too far above this broker's clock {own_lamport}",
            event.origin, event.seq, event.lamport
        )));
    }
    Ok(())
}

/// An epoch is the initial one or a seek's stamp.
fn valid_epoch(epoch: &Epoch) -> bool {
    epoch.is_initial() || (epoch.lamport <= MAX_STAMP && is_broker_id(&epoch.origin))
}

/// Refuses (and logs) a term out of range or too far above this broker's.
fn check_term(app: &AppState, from: &str, term: u64) -> Result<(), ApiError> {
    let own = app.cluster.leadership().term;
    if term <= MAX_STAMP && within_reach(term, own) {
        return Ok(());
    }
    tracing::warn!("refused term {term} from {from}: too far above this broker's term {own}");
    Err(ApiError::BadRequest(format!(
        "term {term} is too far above this broker's term {own}"
    )))
}

fn check_peer(app: &AppState, id: &str) -> Result<(), ApiError> {
    if app.cluster.knows(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{id:?} is not a peer of this broker"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(origin: &str, seq: u64, topic: &str, publisher: &str) -> Event {
        Event {
            origin: origin.to_string(),
            seq,
            lamport: seq,
            change: Change::Publish {
                topic: topic.to_string(),
                publisher: publisher.to_string(),
                payload: "m".to_string(),
                published_at_ms: 1,
                headers: Default::default(),
                msg_id: None,
            },
        }
    }

    /// Checks `events` as a sync's handler does: the index of the first
    /// refused, if any.
    fn first_refused(events: &[Event]) -> Option<usize> {
        let mut checked = Checked::default();
        events
            .iter()
            .position(|event| check_event(event, 0, &mut checked).is_err())
    }

    #[test]
    fn a_run_of_publishes_with_valid_names_is_taken() {
        let run: Vec<Event> = (1..=3).map(|seq| publish("h:1", seq, "t", "p")).collect();
        assert_eq!(first_refused(&run), None);
    }

    #[test]
    fn a_bad_name_or_origin_after_valid_ones_is_still_refused() {
        let cases = [
            publish("h:1", 2, "bad topic", "p"),
            publish("h:1", 2, "t", "bad/publisher"),
            publish("no port", 2, "t", "p"),
            publish("", 2, "t", "p"),
            // Another origin, topic or publisher than the one remembered.
            publish("h:2 x", 2, "t", "p"),
            publish("h:1", 2, "u u", "p"),
            publish("h:1", 2, "t", "q q"),
        ];
        for bad in cases {
            let events = [
                publish("h:1", 1, "t", "p"),
                bad,
                publish("h:1", 3, "t", "p"),
            ];
            assert_eq!(first_refused(&events), Some(1), "{:?}", events[1]);
        }
    }

    #[test]
    fn a_refused_name_is_not_remembered_as_valid() {
        let events = [publish("h:1", 1, "t t", "p"), publish("h:1", 2, "t t", "p")];
        let mut checked = Checked::default();
        for event in &events {
            assert!(check_event(event, 0, &mut checked).is_err());
        }
    }

    #[test]
    fn a_value_is_checked_again_only_when_it_changes_or_was_refused() {
        let checks = std::cell::Cell::new(0);
        let valid = |value: &str| {
            checks.set(checks.get() + 1);
            value != "bad"
        };
        let mut last = None;
        let seen: Vec<bool> = ["a", "a", "b", "b", "bad", "bad", "b"]
            .into_iter()
            .map(|value| remember_if(&mut last, value, valid))
            .collect();
        assert_eq!(seen, [true, true, true, true, false, false, true]);
        // "a", "b", and "bad" twice: a refused value is not remembered,
        // so "b" is still the last valid one at the end.
        assert_eq!(checks.get(), 4);
    }
}
