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

use crate::names::BrokerId;

/// Compares broker ids (see [`BrokerId::compare`]).
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    BrokerId::compare(a, b)
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
mod network;
#[cfg(test)]
mod tests;
