//! A tiny simulated network of election state machines: brokers that
//! start, crash, pause and resume, with messages delivered in any order.

use std::collections::{BTreeMap, VecDeque};

use super::tests::{received, strings, A, B, C, TICK, TIMEOUT};
use super::*;

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
