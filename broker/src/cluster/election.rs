//! Leader election: the bully algorithm as a pure state machine.
//!
//! No I/O, no timers, no clock reads: the driver feeds [`Input`]s with the
//! current time to [`Election::step`] and sends the returned [`Send`]s.
//! Timeouts are deadlines kept in the state and fired by [`Input::Tick`].
//!
//! The live broker with the greatest id (see [`compare_ids`]) leads:
//!
//! - **Election.** On start, when its leader goes down, or when a lower
//!   broker claims leadership or starts an election, a broker sends ELECTION
//!   to every peer with a greater id and waits `timeout`. With no greater
//!   peer it leads at once.
//! - **Answer.** A broker that receives ELECTION from a lower id replies
//!   ANSWER ("I am alive and greater, leave it to me") and runs its own
//!   election; a leader instead repeats COORDINATOR to the lower broker.
//!   An electing broker that gets an ANSWER waits `2 × timeout` for a
//!   COORDINATOR, then starts over.
//! - **Coordinator.** An electing broker that got no ANSWER by its deadline
//!   leads: it takes a new term and sends COORDINATOR to every peer. A
//!   COORDINATOR from a greater id is followed; one from a lower id is
//!   bullied: this broker adopts its term and runs an election.
//!
//! Terms are fencing tokens. Every message carries the sender's term, and a
//! greater term is adopted before anything else; the leader known for the
//! old term is forgotten (a leader steps down). A COORDINATOR with a term
//! below ours is refused, and the reply tells the stale sender our term:
//! COORDINATOR if we lead, ELECTION if the sender is greater (it steps down
//! and, being greater, wins a fresh election), ANSWER otherwise. Heartbeats
//! from the driver carry a peer's term and leader, so a broker that missed
//! the announcement (or a paused leader that resumes) catches up.
//!
//! Outside an election a broker always knows a leader, possibly itself:
//! whenever it is left idle without one, it starts an election.
//!
//! **One leader per term.** A new leader's term is greater than every term it
//! has seen, and terms are dealt round-robin by rank: with `n` brokers, the
//! broker of rank `r` (0 for the lowest id) only leads in terms `t` with
//! `t % n == r`. Two brokers therefore never lead in the same term, even
//! when a late ANSWER lets both time out into leadership; the greater then
//! wins by the bully rules with a still greater term. This needs every
//! broker to be given the same member list.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

/// Compares broker ids `<host>:<port>`: host as text, then port as a number
/// (ids without a parsable port compare after by whole text).
///
/// Two different ids never compare equal (e.g. `h:010` and `h:10` fall back
/// to their text), so the order decides every election.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    match (split_id(a), split_id(b)) {
        (Some((host_a, port_a)), Some((host_b, port_b))) => {
            host_a.cmp(host_b).then(port_a.cmp(&port_b))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.cmp(b))
}

/// Splits `<host>:<port>` at its last colon; `None` without a valid port.
fn split_id(id: &str) -> Option<(&str, u16)> {
    let (host, port) = id.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// Whether id `a` is greater than id `b`.
fn is_greater(a: &str, b: &str) -> bool {
    compare_ids(a, b) == Ordering::Greater
}

/// A bully message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// "I am running an election": sent to every greater peer.
    Election,
    /// "I am alive and greater than you": the reply to an ELECTION.
    Answer,
    /// "I am the leader of this term".
    Coordinator,
}

/// A message for the driver to send, stamped with the sender's term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub to: String,
    pub message: Message,
    pub term: u64,
}

/// What the driver feeds to [`Election::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The broker starts: run an election.
    Start,
    /// Time passes (call regularly, e.g. every 100 ms): fires timeouts.
    Tick,
    /// A bully message from a peer, with the sender's term.
    Received {
        from: String,
        message: Message,
        term: u64,
    },
    /// A heartbeat from a peer reporting its term and the leader it follows.
    Heartbeat {
        from: String,
        term: u64,
        leader: Option<String>,
    },
    /// A peer could not be reached (a send failed or its heartbeats stopped).
    PeerDown { peer: String },
    /// The members changed: these are the peers from now on.
    Members { peers: Vec<String> },
}

/// Where this broker is in the election cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Following or leading `leader` (or not started yet when it is `None`).
    Idle,
    /// ELECTION sent to the greater peers; leads if no ANSWER by `deadline`.
    Electing { deadline: Instant },
    /// A greater peer answered; starts over if no COORDINATOR by `deadline`.
    WaitingForCoordinator { deadline: Instant },
}

/// Messages to send, before they are stamped with the term.
type Outbox = Vec<(String, Message)>;

/// One broker's view of the election (see the module documentation).
#[derive(Debug, Clone)]
pub struct Election {
    me: String,
    /// The other brokers, without duplicates.
    peers: Vec<String>,
    /// How long an ELECTION waits for an ANSWER.
    timeout: Duration,
    /// The greatest term seen.
    term: u64,
    /// The leader of `term`, when known.
    leader: Option<String>,
    phase: Phase,
}

impl Election {
    /// A broker `me` among `peers` (duplicates and `me` itself are dropped)
    /// that waits `timeout` for answers. Feed it [`Input::Start`] first.
    pub fn new(me: String, peers: Vec<String>, timeout: Duration) -> Self {
        let mut unique: Vec<String> = Vec::with_capacity(peers.len());
        for peer in peers {
            if peer != me && !unique.contains(&peer) {
                unique.push(peer);
            }
        }
        Election {
            me,
            peers: unique,
            timeout,
            term: 0,
            leader: None,
            phase: Phase::Idle,
        }
    }

    /// Feeds one input at time `now`; returns the messages to send.
    pub fn step(&mut self, now: Instant, input: Input) -> Vec<Send> {
        let mut outbox = match input {
            Input::Start => self.start_election(now),
            Input::Tick => self.on_tick(now),
            Input::Received {
                from,
                message,
                term,
            } => self.on_message(now, from, message, term),
            // The sender only matters through the leader it reports.
            Input::Heartbeat { term, leader, .. } => {
                self.on_heartbeat(term, leader);
                Vec::new()
            }
            Input::PeerDown { peer } => {
                self.on_peer_down(&peer);
                Vec::new()
            }
            Input::Members { peers } => {
                self.on_members(peers);
                Vec::new()
            }
        };
        // Outside an election a broker always knows a leader: one left
        // without (leader down, or stale after a greater term) runs one.
        if self.phase == Phase::Idle && self.leader.is_none() {
            outbox.extend(self.start_election(now));
        }
        let term = self.term;
        outbox
            .into_iter()
            .map(|(to, message)| Send { to, message, term })
            .collect()
    }

    /// The greatest term seen.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The leader of the current term, when known (possibly this broker).
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Whether this broker leads the current term.
    pub fn is_leader(&self) -> bool {
        self.leader.as_deref() == Some(self.me.as_str())
    }

    /// Sends ELECTION to every greater peer, or leads at once if none.
    fn start_election(&mut self, now: Instant) -> Outbox {
        self.leader = None;
        let greater: Vec<String> = (self.peers.iter())
            .filter(|peer| is_greater(peer, &self.me))
            .cloned()
            .collect();
        if greater.is_empty() {
            return self.become_leader();
        }
        self.phase = Phase::Electing {
            deadline: now + self.timeout,
        };
        greater
            .into_iter()
            .map(|peer| (peer, Message::Election))
            .collect()
    }

    /// Takes the next term of this broker and announces it to every peer.
    fn become_leader(&mut self) -> Outbox {
        self.term = self.next_term();
        self.leader = Some(self.me.clone());
        self.phase = Phase::Idle;
        (self.peers.iter())
            .map(|peer| (peer.clone(), Message::Coordinator))
            .collect()
    }

    /// The smallest term above every term seen that belongs to this broker:
    /// with `n` brokers, the one of rank `r` owns the terms `t % n == r`.
    fn next_term(&self) -> u64 {
        let size = self.peers.len() as u64 + 1;
        let rank = (self.peers.iter())
            .filter(|peer| is_greater(&self.me, peer))
            .count() as u64;
        let above = self.term + 1;
        above + (rank + size - above % size) % size
    }

    /// Fires the deadline of the current phase once `now` has reached it.
    fn on_tick(&mut self, now: Instant) -> Outbox {
        match self.phase {
            Phase::Electing { deadline } if now >= deadline => self.become_leader(),
            Phase::WaitingForCoordinator { deadline } if now >= deadline => {
                self.start_election(now)
            }
            _ => Vec::new(),
        }
    }

    /// Handles a bully message, after adopting its term if greater.
    fn on_message(&mut self, now: Instant, from: String, message: Message, term: u64) -> Outbox {
        let stale = term < self.term;
        self.observe(term);
        match message {
            Message::Election => self.on_election(now, from),
            Message::Answer => {
                self.on_answer(now, &from);
                Vec::new()
            }
            Message::Coordinator if stale => self.refuse(from),
            Message::Coordinator => self.on_coordinator(now, from),
        }
    }

    /// Adopts a greater term; the leader known for the old term is stale.
    fn observe(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            self.leader = None;
        }
    }

    /// ELECTION from a lower broker: answer it, then take over.
    fn on_election(&mut self, now: Instant, from: String) -> Outbox {
        if !is_greater(&self.me, &from) {
            return Vec::new();
        }
        let mut outbox = vec![(from.clone(), Message::Answer)];
        outbox.extend(self.bully(now, from));
        outbox
    }

    /// A greater broker is alive: wait for its COORDINATOR.
    fn on_answer(&mut self, now: Instant, from: &str) {
        if is_greater(from, &self.me) && matches!(self.phase, Phase::Electing { .. }) {
            self.phase = Phase::WaitingForCoordinator {
                deadline: now + self.timeout * 2,
            };
        }
    }

    /// COORDINATOR of a term at least ours: follow a greater broker, bully a
    /// lower one.
    fn on_coordinator(&mut self, now: Instant, from: String) -> Outbox {
        match compare_ids(&from, &self.me) {
            Ordering::Greater => {
                self.follow(from);
                Vec::new()
            }
            Ordering::Less => self.bully(now, from),
            Ordering::Equal => Vec::new(),
        }
    }

    /// Asserts this broker over the `lower` one: a leader repeats its
    /// COORDINATOR to it; an idle follower starts an election; a broker
    /// already in an election carries on.
    fn bully(&mut self, now: Instant, lower: String) -> Outbox {
        if self.is_leader() {
            vec![(lower, Message::Coordinator)]
        } else if self.phase == Phase::Idle {
            self.start_election(now)
        } else {
            Vec::new()
        }
    }

    /// Refuses a COORDINATOR of an older term; the reply carries our term:
    /// COORDINATOR if we lead, else ELECTION to a greater sender (so it
    /// runs, and wins, a fresh election) or ANSWER to a lower one.
    fn refuse(&self, from: String) -> Outbox {
        let reply = match compare_ids(&from, &self.me) {
            Ordering::Equal => return Vec::new(),
            _ if self.is_leader() => Message::Coordinator,
            Ordering::Greater => Message::Election,
            Ordering::Less => Message::Answer,
        };
        vec![(from, reply)]
    }

    /// A peer's term and leader: catch up on a greater term, and follow the
    /// reported leader when it is greater than this broker. Otherwise `step`
    /// starts an election if this leaves us without leader. A heartbeat of
    /// our own term changes nothing: it may still name a leader that has
    /// just gone down, which only a COORDINATOR may bring back.
    fn on_heartbeat(&mut self, term: u64, reported: Option<String>) {
        if term <= self.term {
            return;
        }
        self.observe(term);
        if let Some(leader) = reported.filter(|leader| is_greater(leader, &self.me)) {
            self.follow(leader);
        }
    }

    /// Forgets a leader that went down (`step` then starts an election).
    fn on_peer_down(&mut self, peer: &str) {
        if peer != self.me && self.leader.as_deref() == Some(peer) {
            self.leader = None;
        }
    }

    /// Takes the new peer list; a leader that left is forgotten (`step`
    /// then starts an election).
    fn on_members(&mut self, peers: Vec<String>) {
        let mut peers: Vec<String> = peers.into_iter().filter(|p| *p != self.me).collect();
        peers.sort();
        peers.dedup();
        self.peers = peers;
        let leader_left = self
            .leader
            .as_ref()
            .is_some_and(|leader| *leader != self.me && !self.peers.contains(leader));
        if leader_left {
            self.leader = None;
        }
    }

    /// Follows `leader` for the current term.
    fn follow(&mut self, leader: String) {
        self.leader = Some(leader);
        self.phase = Phase::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};

    const TIMEOUT: Duration = Duration::from_millis(500);
    const TICK: Duration = Duration::from_millis(100);

    const A: &str = "h:1";
    const B: &str = "h:2";
    const C: &str = "h:3";

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// Broker `me` of the cluster `all` (which may include `me`).
    fn machine(me: &str, all: &[&str]) -> Election {
        Election::new(me.to_string(), strings(all), TIMEOUT)
    }

    fn received(from: &str, message: Message, term: u64) -> Input {
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

    // ---- a tiny network ----

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Status {
        Up,
        /// Suspended: keeps its state, acts on nothing, messages to it are lost.
        Paused,
        /// Gone: sends to it fail (the sender is told `PeerDown`).
        Crashed,
    }

    #[derive(Debug)]
    struct Node {
        machine: Election,
        status: Status,
    }

    /// Brokers exchanging `Send`s through an in-memory queue. Every step of
    /// every machine checks that terms never decrease and that no two
    /// brokers (paused or crashed ones included) lead in the same term.
    struct Network {
        ids: Vec<String>,
        nodes: BTreeMap<String, Node>,
        in_flight: VecDeque<(String, Send)>,
        now: Instant,
    }

    impl Network {
        /// The brokers `ids`, up but not started.
        fn new(ids: &[&str]) -> Self {
            let ids = strings(ids);
            let nodes = (ids.iter())
                .map(|id| (id.clone(), Self::fresh(id, &ids)))
                .collect();
            Network {
                ids,
                nodes,
                in_flight: VecDeque::new(),
                now: Instant::now(),
            }
        }

        fn fresh(id: &str, ids: &[String]) -> Node {
            Node {
                machine: Election::new(id.to_string(), ids.to_vec(), TIMEOUT),
                status: Status::Up,
            }
        }

        fn node(&self, id: &str) -> &Election {
            &self.nodes[id].machine
        }

        fn status(&self, id: &str) -> Status {
            self.nodes[id].status
        }

        fn ids_with(&self, status: Status) -> Vec<String> {
            (self.ids.iter())
                .filter(|id| self.status(id) == status)
                .cloned()
                .collect()
        }

        /// Steps broker `id` and queues what it sends.
        fn feed(&mut self, id: &str, input: Input) {
            let now = self.now;
            let Some(node) = self.nodes.get_mut(id) else {
                panic!("no broker {id}");
            };
            let before = node.machine.term();
            let sends = node.machine.step(now, input);
            assert!(node.machine.term() >= before, "{id}: term went down");
            for sent in sends {
                assert_eq!(sent.term, node.machine.term());
                self.in_flight.push_back((id.to_string(), sent));
            }
            self.check_one_leader_per_term();
        }

        fn check_one_leader_per_term(&self) {
            let mut leaders: BTreeMap<u64, &str> = BTreeMap::new();
            for (id, node) in &self.nodes {
                if node.machine.is_leader() {
                    if let Some(other) = leaders.insert(node.machine.term(), id) {
                        panic!(
                            "{other} and {id} both lead term {}: {:#?}",
                            node.machine.term(),
                            self.nodes
                        );
                    }
                }
            }
        }

        fn start(&mut self, id: &str) {
            self.feed(id, Input::Start);
        }

        fn start_all(&mut self) {
            for id in self.ids.clone() {
                self.start(&id);
            }
        }

        /// Delivers the in-flight message at `index`.
        fn deliver(&mut self, index: usize) {
            let Some((from, sent)) = self.in_flight.remove(index) else {
                return;
            };
            match self.status(&sent.to) {
                Status::Up => self.feed(
                    &sent.to,
                    Input::Received {
                        from,
                        message: sent.message,
                        term: sent.term,
                    },
                ),
                Status::Paused => {}
                Status::Crashed if self.status(&from) == Status::Up => {
                    self.feed(&from, Input::PeerDown { peer: sent.to })
                }
                Status::Crashed => {}
            }
        }

        /// Delivers the first in-flight `message` from `from` to `to`.
        fn deliver_one(&mut self, from: &str, to: &str, message: Message) {
            let index = (self.in_flight.iter())
                .position(|(f, sent)| f == from && sent.to == to && sent.message == message);
            let Some(index) = index else {
                panic!("no {message:?} from {from} to {to}: {:?}", self.in_flight);
            };
            self.deliver(index);
        }

        /// Delivers messages in order until none is left.
        fn drain(&mut self) {
            for _ in 0..10_000 {
                if self.in_flight.is_empty() {
                    return;
                }
                self.deliver(0);
            }
            panic!("messages never stop: {:?}", self.in_flight);
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
        }

        fn tick_all(&mut self) {
            for id in self.ids_with(Status::Up) {
                self.feed(&id, Input::Tick);
            }
        }

        fn send_heartbeat(&mut self, from: &str, to: &str) {
            let node = self.node(from);
            let input = Input::Heartbeat {
                from: from.to_string(),
                term: node.term(),
                leader: node.leader().map(str::to_string),
            };
            self.feed(to, input);
        }

        fn heartbeats(&mut self) {
            let up = self.ids_with(Status::Up);
            for from in &up {
                for to in up.iter().filter(|to| *to != from) {
                    self.send_heartbeat(from, to);
                }
            }
        }

        /// What the driver does when a leader's heartbeats stop.
        fn detect_silence(&mut self) {
            for id in self.ids_with(Status::Up) {
                let leader = self.node(&id).leader().map(str::to_string);
                if let Some(leader) = leader.filter(|l| self.status(l) != Status::Up) {
                    self.feed(&id, Input::PeerDown { peer: leader });
                }
            }
        }

        /// One period of the driver: messages, a tick, heartbeats.
        fn round(&mut self) {
            self.drain();
            self.advance(TICK);
            self.tick_all();
            self.drain();
            self.heartbeats();
            self.drain();
            self.detect_silence();
            self.drain();
        }

        /// The leader and term every live broker agrees on, when the greatest
        /// live broker leads and everyone idles.
        fn agreement(&self) -> Option<(String, u64)> {
            let up = self.ids_with(Status::Up);
            let greatest = up.iter().max_by(|a, b| compare_ids(a, b))?;
            let term = self.node(greatest).term();
            let agreed = up.iter().all(|id| {
                let node = self.node(id);
                node.leader() == Some(greatest.as_str())
                    && node.term() == term
                    && node.phase == Phase::Idle
            });
            (agreed && self.in_flight.is_empty()).then(|| (greatest.clone(), term))
        }

        /// Runs rounds until the cluster agrees, then checks it stays so.
        fn settle(&mut self) -> (String, u64) {
            for _ in 0..100 {
                self.round();
                if let Some(agreed) = self.agreement() {
                    for _ in 0..20 {
                        self.round();
                        assert_eq!(self.agreement(), Some(agreed.clone()), "unstable");
                    }
                    return agreed;
                }
            }
            panic!("no agreement: {:#?}", self.nodes);
        }

        /// Marks `id` down; the others notice its silence.
        fn go(&mut self, id: &str, status: Status) {
            if let Some(node) = self.nodes.get_mut(id) {
                node.status = status;
            }
            for other in self.ids_with(Status::Up) {
                self.feed(
                    &other,
                    Input::PeerDown {
                        peer: id.to_string(),
                    },
                );
            }
        }

        fn crash(&mut self, id: &str) {
            self.go(id, Status::Crashed);
        }

        fn pause(&mut self, id: &str) {
            self.go(id, Status::Paused);
        }

        fn resume(&mut self, id: &str) {
            if let Some(node) = self.nodes.get_mut(id) {
                node.status = Status::Up;
            }
        }

        /// Starts `id` again with a fresh state (term 0).
        fn restart(&mut self, id: &str) {
            let node = Self::fresh(id, &self.ids);
            self.nodes.insert(id.to_string(), node);
            self.start(id);
        }
    }

    #[test]
    fn the_greatest_of_three_leads() {
        let mut net = Network::new(&[A, B, C]);
        net.start_all();
        assert_eq!(net.settle(), (C.to_string(), 2));
        assert!(net.node(C).is_leader());
        assert!(!net.node(A).is_leader() && !net.node(B).is_leader());
    }

    #[test]
    fn the_greatest_port_leads_even_when_its_text_is_smaller() {
        let mut net = Network::new(&["h:9", "h:100", "h:10"]);
        net.start_all();
        assert_eq!(net.settle().0, "h:100");
    }

    #[test]
    fn brokers_started_in_any_order_agree() {
        for order in [[A, B, C], [C, B, A], [B, A, C], [A, C, B]] {
            let mut net = Network::new(&[A, B, C]);
            for id in order {
                net.start(id);
                net.round();
            }
            assert_eq!(net.settle().0, C);
        }
    }

    #[test]
    fn a_greater_broker_that_comes_back_takes_the_lead() {
        let mut net = Network::new(&[A, B, C]);
        net.crash(C);
        net.start(A);
        net.start(B);
        let (leader, before) = net.settle();
        assert_eq!(leader, B);
        net.restart(C);
        let (leader, after) = net.settle();
        assert_eq!(leader, C);
        assert!(after > before);
    }

    #[test]
    fn a_greater_broker_that_comes_back_behind_the_cluster_term_takes_the_lead() {
        let mut net = Network::new(&[A, B, C]);
        net.start_all();
        net.settle();
        // Churn while C is away raises the cluster's term above C's next one.
        net.crash(C);
        net.settle();
        net.crash(B);
        net.settle();
        net.restart(B);
        let (leader, before) = net.settle();
        assert_eq!(leader, B);
        assert!(before > 2, "term {before}");
        // C restarts at term 0: its first COORDINATOR (term 2) is refused,
        // the refusals teach it the term, and it leads above it.
        net.restart(C);
        assert_eq!(net.node(C).term(), 2);
        let (leader, after) = net.settle();
        assert_eq!(leader, C);
        assert!(after > before);
    }

    #[test]
    fn when_the_leader_crashes_the_next_greatest_leads_with_a_greater_term() {
        let mut net = Network::new(&[A, B, C]);
        net.start_all();
        let (_, before) = net.settle();
        net.crash(C);
        let (leader, after) = net.settle();
        assert_eq!(leader, B);
        assert!(after > before);
        net.crash(B);
        let (leader, last) = net.settle();
        assert_eq!(leader, A);
        assert!(last > after);
    }

    #[test]
    fn a_paused_leader_that_resumes_steps_down_then_leads_again() {
        let mut net = Network::new(&[A, B, C]);
        net.start_all();
        let (_, first) = net.settle();
        net.pause(C);
        let (leader, second) = net.settle();
        assert_eq!(leader, B);
        assert!(second > first);
        // Paused, C still believes it leads, but in an older term.
        assert!(net.node(C).is_leader());
        assert_eq!(net.node(C).term(), first);
        net.resume(C);
        net.send_heartbeat(B, C);
        // C steps down and, being the greatest, leads again at once.
        assert!(net.node(C).is_leader());
        let third = net.node(C).term();
        assert!(third > second);
        assert_eq!(net.settle(), (C.to_string(), third));
    }

    #[test]
    fn a_paused_leader_that_resumes_learns_the_term_from_a_refusal() {
        let mut net = Network::new(&[A, B, C]);
        net.start_all();
        net.settle();
        net.pause(C);
        let (_, second) = net.settle();
        net.resume(C);
        // C repeats its stale COORDINATOR to A (e.g. A's ELECTION reached it).
        net.feed(C, received(A, Message::Election, 0));
        net.drain();
        let (leader, third) = net.settle();
        assert_eq!(leader, C);
        assert!(third > second);
    }

    #[test]
    fn two_brokers_starting_elections_together_agree() {
        let mut net = Network::new(&[A, B, C]);
        net.crash(C);
        net.start(A);
        net.start(B);
        assert_eq!(net.settle().0, B);
        let mut net = Network::new(&[A, B, C]);
        net.start(B);
        net.start(C);
        assert_eq!(net.settle().0, C);
    }

    #[test]
    fn an_answer_after_the_deadline_but_before_the_tick_still_counts() {
        let mut net = Network::new(&[B, C]);
        net.start(B);
        net.deliver_one(B, C, Message::Election);
        net.advance(TIMEOUT * 2);
        net.deliver_one(C, B, Message::Answer);
        assert!(matches!(
            net.node(B).phase,
            Phase::WaitingForCoordinator { .. }
        ));
        net.tick_all();
        assert!(!net.node(B).is_leader());
        assert_eq!(net.settle().0, C);
    }

    /// With plain `greatest seen + 1` terms, B and C would both lead term 1.
    #[test]
    fn an_answer_after_the_leadership_tick_is_ignored_and_the_greater_takes_over() {
        let mut net = Network::new(&[B, C]);
        net.start(B);
        net.deliver_one(B, C, Message::Election);
        assert!(net.node(C).is_leader());
        // C's ANSWER and COORDINATOR are late: B times out and leads too, in
        // another term.
        net.advance(TIMEOUT);
        net.tick_all();
        assert!(net.node(B).is_leader());
        assert_ne!(net.node(B).term(), net.node(C).term());
        net.deliver_one(C, B, Message::Answer);
        assert!(net.node(B).is_leader());
        let (leader, term) = net.settle();
        assert_eq!(leader, C);
        assert!(term > 2);
    }

    #[test]
    fn a_coordinator_arriving_while_electing_ends_the_election() {
        let mut net = Network::new(&[A, B, C]);
        net.start(C);
        net.start(A);
        net.deliver_one(C, A, Message::Coordinator);
        assert_eq!(net.node(A).leader(), Some(C));
        net.advance(TIMEOUT * 3);
        net.feed(A, Input::Tick);
        assert_eq!(net.node(A).leader(), Some(C));
        assert!(!net.node(A).is_leader());
        assert_eq!(net.settle().0, C);
    }

    #[test]
    fn a_lower_coordinator_arriving_while_electing_does_not_stop_the_election() {
        let mut net = Network::new(&[A, B, C]);
        net.crash(C);
        net.start(B);
        // A timed out alone (B's ANSWER lost) and announces term 3.
        net.start(A);
        net.advance(TIMEOUT);
        net.feed(A, Input::Tick);
        net.deliver_one(A, B, Message::Coordinator);
        assert_eq!(net.node(B).term(), 3);
        assert!(matches!(net.node(B).phase, Phase::Electing { .. }));
        let (leader, term) = net.settle();
        assert_eq!(leader, B);
        assert!(term > 3);
    }

    /// A small deterministic random generator (no dependency needed).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = (self.0)
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn pick(&mut self, ids: &[String]) -> Option<String> {
            (!ids.is_empty()).then(|| ids[self.below(ids.len())].clone())
        }
    }

    /// Random reorderings, losses, delays, crashes, pauses and restarts never
    /// make two brokers lead one term, and once the network behaves the
    /// greatest live broker leads.
    #[test]
    fn chaos_never_makes_two_leaders_of_a_term_and_then_settles() {
        for seed in 0..300 {
            let mut rng = Lcg(seed);
            let mut net = Network::new(&["h:9", "h:10", "g:80", "h:100"]);
            net.start_all();
            for _ in 0..300 {
                chaos_step(&mut net, &mut rng);
            }
            for id in net.ids_with(Status::Paused) {
                net.resume(&id);
            }
            if net.ids_with(Status::Up).is_empty() {
                net.restart("g:80");
            }
            let (leader, _) = net.settle();
            let greatest = (net.ids_with(Status::Up).into_iter())
                .max_by(|a, b| compare_ids(a, b))
                .unwrap();
            assert_eq!(leader, greatest, "seed {seed}");
        }
    }

    fn chaos_step(net: &mut Network, rng: &mut Lcg) {
        let up = net.ids_with(Status::Up);
        match rng.below(100) {
            0..=54 if !net.in_flight.is_empty() => {
                let index = rng.below(net.in_flight.len());
                net.deliver(index);
            }
            55..=59 if !net.in_flight.is_empty() => {
                let index = rng.below(net.in_flight.len());
                net.in_flight.remove(index);
            }
            60..=74 => {
                net.advance(TICK * rng.below(4) as u32);
                net.tick_all();
            }
            75..=84 => {
                if let (Some(from), Some(to)) = (rng.pick(&up), rng.pick(&up)) {
                    if from != to {
                        net.send_heartbeat(&from, &to);
                    }
                }
            }
            85..=87 if up.len() > 1 => {
                if let Some(id) = rng.pick(&up) {
                    net.crash(&id);
                }
            }
            88..=90 => {
                if let Some(id) = rng.pick(&net.ids_with(Status::Crashed)) {
                    net.restart(&id);
                }
            }
            91..=93 if up.len() > 1 => {
                if let Some(id) = rng.pick(&up) {
                    net.pause(&id);
                }
            }
            94..=96 => {
                if let Some(id) = rng.pick(&net.ids_with(Status::Paused)) {
                    net.resume(&id);
                }
            }
            _ => net.detect_silence(),
        }
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
}
