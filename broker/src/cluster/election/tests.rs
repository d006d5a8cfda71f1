//! Unit tests of the bully state machine, one broker at a time.

use super::*;

pub(super) const TIMEOUT: Duration = Duration::from_millis(500);
pub(super) const TICK: Duration = Duration::from_millis(100);

pub(super) const A: &str = "h:1";
pub(super) const B: &str = "h:2";
pub(super) const C: &str = "h:3";

pub(super) fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// Broker `me` of the cluster `all` (which may include `me`).
fn machine(me: &str, all: &[&str]) -> Election {
    Election::new(me.to_string(), strings(all), TIMEOUT)
}

pub(super) fn received(from: &str, message: Message, term: u64) -> Input {
    Input::Received {
        from: from.to_string(),
        message,
        term,
    }
}

fn heartbeat(from: &str, term: u64, leader: Option<&str>) -> Input {
    Input::Heartbeat {
        from: from.to_string(),
        term,
        leader: leader.map(str::to_string),
    }
}

fn send(to: &str, message: Message, term: u64) -> Send {
    Send {
        to: to.to_string(),
        message,
        term,
    }
}

// ---- ids ----

#[test]
fn ids_compare_host_as_text_then_port_as_number() {
    assert_eq!(compare_ids("a:10", "a:9"), Ordering::Greater);
    assert_eq!(compare_ids("b:1", "a:99"), Ordering::Greater);
    assert_eq!(
        compare_ids("localhost:3000", "localhost:3001"),
        Ordering::Less
    );
    assert_eq!(compare_ids("a:9", "a:9"), Ordering::Equal);
    assert_eq!(compare_ids("[::1]:80", "[::1]:443"), Ordering::Less);
}

#[test]
fn ids_without_a_port_compare_after_by_whole_text() {
    assert_eq!(compare_ids("a:x", "z:1"), Ordering::Greater);
    assert_eq!(compare_ids("zzz", "a"), Ordering::Greater);
    assert_eq!(compare_ids("a:70000", "a:1"), Ordering::Greater);
    assert_eq!(compare_ids("a", "b"), Ordering::Less);
}

#[test]
fn different_ids_never_compare_equal() {
    assert_eq!(compare_ids("h:010", "h:10"), Ordering::Less);
    assert_eq!(compare_ids("h:10", "h:010"), Ordering::Greater);
    let mut ids = strings(&["h:100", "h:9", "h:10", "g:5", "x", "h:010"]);
    ids.sort_by(|a, b| compare_ids(a, b));
    assert_eq!(ids, strings(&["g:5", "h:9", "h:010", "h:10", "h:100", "x"]));
}

// ---- single machine ----

#[test]
fn a_lone_broker_leads_at_start_with_term_1() {
    let now = Instant::now();
    let mut lone = Election::new(A.to_string(), Vec::new(), TIMEOUT);
    assert_eq!(lone.step(now, Input::Start), Vec::new());
    assert!(lone.is_leader());
    assert_eq!(lone.leader(), Some(A));
    assert_eq!(lone.term(), 1);
    // Its own line in the peer list changes nothing.
    let mut listed = machine(A, &[A, A]);
    assert_eq!(listed.step(now, Input::Start), Vec::new());
    assert!(listed.is_leader());
    assert_eq!(listed.term(), 1);
}

#[test]
fn start_sends_election_to_every_greater_peer_only() {
    let now = Instant::now();
    let mut b = machine(B, &[A, B, C, C]);
    assert_eq!(
        b.step(now, Input::Start),
        vec![send(C, Message::Election, 0)]
    );
    assert!(!b.is_leader());
    assert_eq!(b.leader(), None);
}

#[test]
fn the_greatest_leads_at_start_and_announces_itself() {
    let now = Instant::now();
    let mut c = machine(C, &[A, B, C]);
    let sends = c.step(now, Input::Start);
    // Rank 2 of 3: C owns the terms 2, 5, 8, ...
    assert_eq!(
        sends,
        vec![
            send(A, Message::Coordinator, 2),
            send(B, Message::Coordinator, 2)
        ]
    );
    assert!(c.is_leader());
}

#[test]
fn with_no_answer_by_the_deadline_a_broker_leads() {
    let t0 = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(t0, Input::Start);
    assert_eq!(b.step(t0 + TIMEOUT - TICK, Input::Tick), Vec::new());
    assert!(!b.is_leader());
    let sends = b.step(t0 + TIMEOUT, Input::Tick);
    assert!(b.is_leader());
    assert_eq!(b.term(), 1);
    assert_eq!(
        sends,
        vec![
            send(A, Message::Coordinator, 1),
            send(C, Message::Coordinator, 1)
        ]
    );
}

#[test]
fn a_new_leader_takes_a_term_above_every_term_seen() {
    let t0 = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(t0, Input::Start);
    b.step(t0, received(A, Message::Election, 7));
    assert_eq!(b.term(), 7);
    b.step(t0 + TIMEOUT, Input::Tick);
    assert!(b.is_leader());
    // B (rank 1 of 3) owns 1, 4, 7, 10: the first above 7 is 10.
    assert_eq!(b.term(), 10);
}

#[test]
fn lower_brokers_answer_and_defer() {
    let t0 = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    let mut b = machine(B, &[A, B, C]);
    assert_eq!(
        a.step(t0, Input::Start),
        vec![send(B, Message::Election, 0), send(C, Message::Election, 0)]
    );
    // B answers A and runs its own election.
    assert_eq!(
        b.step(t0, received(A, Message::Election, 0)),
        vec![send(A, Message::Answer, 0), send(C, Message::Election, 0)]
    );
    // A defers: past its ELECTION deadline it does not lead ...
    let answered = t0 + TICK;
    assert_eq!(
        a.step(answered, received(B, Message::Answer, 0)),
        Vec::new()
    );
    assert_eq!(a.step(t0 + TIMEOUT, Input::Tick), Vec::new());
    assert!(!a.is_leader());
    assert_eq!(
        a.phase,
        Phase::WaitingForCoordinator {
            deadline: answered + TIMEOUT * 2
        }
    );
    // ... and starts over when no COORDINATOR comes in 2 x timeout.
    assert_eq!(
        a.step(answered + TIMEOUT * 2 - TICK, Input::Tick),
        Vec::new()
    );
    assert_eq!(
        a.step(answered + TIMEOUT * 2, Input::Tick),
        vec![send(B, Message::Election, 0), send(C, Message::Election, 0)]
    );
}

#[test]
fn an_electing_broker_only_answers_further_elections() {
    let t0 = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(t0, Input::Start);
    assert_eq!(
        b.step(t0, received(A, Message::Election, 0)),
        vec![send(A, Message::Answer, 0)]
    );
    b.step(t0, received(C, Message::Answer, 0));
    assert_eq!(
        b.step(t0, received(A, Message::Election, 0)),
        vec![send(A, Message::Answer, 0)]
    );
}

#[test]
fn a_leader_answers_an_election_with_its_coordinator() {
    let now = Instant::now();
    let mut c = machine(C, &[A, B, C]);
    c.step(now, Input::Start);
    assert_eq!(
        c.step(now, received(A, Message::Election, 0)),
        vec![
            send(A, Message::Answer, 2),
            send(A, Message::Coordinator, 2)
        ]
    );
    assert!(c.is_leader());
    assert_eq!(c.term(), 2);
}

#[test]
fn elections_and_answers_from_the_wrong_side_are_ignored() {
    let now = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(now, Input::Start);
    // Only lower brokers send ELECTION, only greater ones ANSWER.
    assert_eq!(b.step(now, received(C, Message::Election, 0)), Vec::new());
    assert_eq!(b.step(now, received(A, Message::Answer, 0)), Vec::new());
    assert!(matches!(b.phase, Phase::Electing { .. }));
}

#[test]
fn a_follower_runs_an_election_when_a_lower_broker_does() {
    let now = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(b.leader(), Some(C));
    assert_eq!(
        b.step(now, received(A, Message::Election, 0)),
        vec![send(A, Message::Answer, 2), send(C, Message::Election, 2)]
    );
}

#[test]
fn a_coordinator_from_a_greater_broker_is_followed() {
    let now = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(now, Input::Start);
    assert_eq!(
        a.step(now, received(C, Message::Coordinator, 5)),
        Vec::new()
    );
    assert_eq!(a.leader(), Some(C));
    assert_eq!(a.term(), 5);
    assert!(!a.is_leader());
    assert_eq!(a.phase, Phase::Idle);
}

#[test]
fn a_coordinator_from_a_lower_broker_is_bullied() {
    let now = Instant::now();
    let mut c = machine(C, &[A, B, C]);
    c.step(now, received(B, Message::Coordinator, 4));
    // C adopts term 4, so its own term is greater: 5.
    assert!(c.is_leader());
    assert_eq!(c.term(), 5);
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(
        b.step(now, received(A, Message::Coordinator, 3)),
        vec![send(C, Message::Election, 3)]
    );
    assert_eq!(b.term(), 3);
    assert_eq!(b.leader(), None);
}

#[test]
fn a_stale_coordinator_is_refused_and_told_the_term() {
    let now = Instant::now();
    // A follower answers a lower stale sender ...
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 5));
    assert_eq!(
        b.step(now, received(A, Message::Coordinator, 3)),
        vec![send(A, Message::Answer, 5)]
    );
    assert_eq!((b.leader(), b.term()), (Some(C), 5));
    // ... and sends a greater one an ELECTION, so it takes over anew.
    let mut a = machine(A, &[A, B, C]);
    a.step(now, received(B, Message::Coordinator, 4));
    assert_eq!(
        a.step(now, received(C, Message::Coordinator, 2)),
        vec![send(C, Message::Election, 4)]
    );
    assert_eq!((a.leader(), a.term()), (Some(B), 4));
    // A leader repeats its COORDINATOR.
    let mut c = machine(C, &[A, B, C]);
    c.step(now, Input::Start);
    c.step(now, received(B, Message::Coordinator, 4));
    assert_eq!((c.leader(), c.term()), (Some(C), 5));
    assert_eq!(
        c.step(now, received(A, Message::Coordinator, 3)),
        vec![send(A, Message::Coordinator, 5)]
    );
    assert_eq!((c.leader(), c.term()), (Some(C), 5));
}

#[test]
fn a_stale_leader_steps_down_on_a_greater_term() {
    let t0 = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(t0, Input::Start);
    a.step(t0 + TIMEOUT, Input::Tick);
    assert!(a.is_leader());
    assert_eq!(a.term(), 3);
    // B refused A's COORDINATOR with an ANSWER of term 5.
    let sends = a.step(t0 + TIMEOUT, received(B, Message::Answer, 5));
    assert!(!a.is_leader());
    assert_eq!(a.term(), 5);
    assert_eq!(
        sends,
        vec![send(B, Message::Election, 5), send(C, Message::Election, 5)]
    );
}

#[test]
fn a_lost_leader_triggers_an_election() {
    let now = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(a.step(now, Input::PeerDown { peer: B.into() }), Vec::new());
    assert_eq!(a.leader(), Some(C));
    assert_eq!(
        a.step(now, Input::PeerDown { peer: C.into() }),
        vec![send(B, Message::Election, 2), send(C, Message::Election, 2)]
    );
    assert_eq!(a.leader(), None);
    // A leader never loses itself.
    let mut c = machine(C, &[A, B, C]);
    c.step(now, Input::Start);
    assert_eq!(c.step(now, Input::PeerDown { peer: C.into() }), Vec::new());
    assert!(c.is_leader());
}

#[test]
fn a_heartbeat_with_a_greater_term_and_greater_leader_is_followed() {
    let now = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(now, Input::Start);
    assert_eq!(a.step(now, heartbeat(B, 5, Some(C))), Vec::new());
    assert_eq!((a.leader(), a.term()), (Some(C), 5));
    assert_eq!(a.phase, Phase::Idle);
}

#[test]
fn a_heartbeat_with_a_greater_term_and_a_lower_or_no_leader_starts_an_election() {
    let now = Instant::now();
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(
        b.step(now, heartbeat(A, 3, Some(A))),
        vec![send(C, Message::Election, 3)]
    );
    assert_eq!((b.leader(), b.term()), (None, 3));
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(
        b.step(now, heartbeat(A, 4, None)),
        vec![send(C, Message::Election, 4)]
    );
}

#[test]
fn a_heartbeat_with_the_same_term_changes_nothing() {
    let now = Instant::now();
    // A lost its leader C (term 2); B, not yet aware, still names C.
    let mut a = machine(A, &[A, B, C]);
    a.step(now, received(C, Message::Coordinator, 2));
    a.step(now, Input::PeerDown { peer: C.into() });
    assert_eq!(a.leader(), None);
    assert_eq!(a.step(now, heartbeat(B, 2, Some(C))), Vec::new());
    assert_eq!((a.leader(), a.term()), (None, 2));
    assert!(matches!(a.phase, Phase::Electing { .. }));
    // A lower term is no news either.
    let mut b = machine(B, &[A, B, C]);
    b.step(now, Input::Start);
    assert_eq!(b.step(now, heartbeat(A, 0, Some(A))), Vec::new());
    assert!(matches!(b.phase, Phase::Electing { .. }));
}

#[test]
fn a_heartbeat_with_a_lower_term_changes_nothing() {
    let now = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(now, received(C, Message::Coordinator, 5));
    assert_eq!(a.step(now, heartbeat(B, 4, Some(B))), Vec::new());
    assert_eq!((a.leader(), a.term()), (Some(C), 5));
}

#[test]
fn every_send_carries_the_term_after_the_step() {
    let now = Instant::now();
    let mut c = machine(C, &[A, B, C]);
    // The ANSWER is built before C leads, yet carries its new term.
    assert_eq!(
        c.step(now, received(A, Message::Election, 0)),
        vec![
            send(A, Message::Answer, 2),
            send(A, Message::Coordinator, 2),
            send(B, Message::Coordinator, 2)
        ]
    );
}

#[test]
fn a_leader_that_leaves_the_members_is_replaced() {
    let now = Instant::now();
    let mut a = machine(A, &[A, B, C]);
    a.step(now, received(C, Message::Coordinator, 2));
    assert_eq!(a.leader(), Some(C));
    // C removed: A runs an election among the members left.
    let sends = a.step(
        now,
        Input::Members {
            peers: strings(&[B]),
        },
    );
    assert_eq!(a.leader(), None);
    assert_eq!(sends, vec![send(B, Message::Election, 2)]);
    // A member list that keeps the leader changes nothing.
    let mut b = machine(B, &[A, B, C]);
    b.step(now, received(C, Message::Coordinator, 2));
    let kept = Input::Members {
        peers: strings(&[A, C, "h:9"]),
    };
    assert_eq!(b.step(now, kept), Vec::new());
    assert_eq!(b.leader(), Some(C));
}
