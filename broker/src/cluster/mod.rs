//! The cluster: membership and liveness, replication to every peer, and the
//! bully election.
//!
//! Each peer gets a replicator task (`replicator`) that pushes the events
//! the peer lacks and doubles as the heartbeat; the election state machine
//! (`election`, pure) is driven by one task (`driver`) that owns it and
//! publishes the resulting term and leader.

mod driver;
mod election;
mod gathering;
mod members;
mod membership;
mod pacing;
mod quorum;
mod relay;
mod replicator;
mod sizing;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::web;
use client::http::{Forwarded, ForwardedRequest};
use client::peer::{EncodedEvent, Have, SyncRequest};
use client::wire::Member;
use client::{Client, Connect, PeerAddr};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use driver::received as received_election;
pub use election::Input;
use membership::Membership;
use pacing::{Pacing, PeerLag};

use crate::clock::within_reach;
use crate::error::ApiError;
use crate::event::MAX_STAMP;
use crate::lock;
use crate::AppState;

/// How long a peer may lack another live broker's events without catching
/// up before this broker relays them (see `relay`).
const RELAY_AFTER: Duration = Duration::from_secs(1);
/// How often each peer is synced when nothing happens (the heartbeat).
const HEARTBEAT: Duration = Duration::from_millis(200);
/// A peer not heard from for this long is taken as down.
const DEAD_AFTER: Duration = Duration::from_millis(1500);
/// How often a call to the leader checks that it is still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// Longest time one peer call may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a bully election waits for answers.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a broker starting without history waits for a peer to say
/// whether it had one, before taking it as new.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(2);
/// How long a leader-mode write waits for a majority to hold it.
const QUORUM_WAIT: Duration = Duration::from_secs(3);
/// Longest a write waits for a peer too far behind (see `pacing`).
const PACING_PATIENCE: Duration = Duration::from_secs(1);

/// What this broker knows of its peers, behind one lock: the list and a
/// client for each, their liveness, what each last said it holds, and (on
/// a follower in leader mode) the leader's commit vector.
struct PeerTable {
    list: Vec<PeerAddr>,
    clients: HashMap<String, Client>,
    /// How the clients reach the peers.
    connect: Connect,
    liveness: Membership,
    /// What each peer last said it holds, and its term then.
    reports: HashMap<String, Report>,
    /// Leader mode, on a follower: the commit vector the leader last sent,
    /// and the term it led then.
    leader_commit: Option<(u64, Have)>,
}

/// A peer's `have` as it last reported it, in its term then.
struct Report {
    have: Have,
    /// What of `have` the peer holds on disk (see `SyncResponse::synced`).
    synced: Have,
    term: u64,
    /// The peer lost events of its own (see `relay::lost_own_events`).
    lost_own: bool,
}

impl PeerTable {
    fn new(list: &[PeerAddr], connect: Connect) -> PeerTable {
        let mut table = PeerTable {
            list: Vec::new(),
            clients: HashMap::new(),
            connect,
            liveness: Membership::new(DEAD_AFTER),
            reports: HashMap::new(),
            leader_commit: None,
        };
        table.set_list(list);
        table
    }

    fn set_list(&mut self, list: &[PeerAddr]) {
        self.list = list.to_vec();
        self.clients = list
            .iter()
            .filter_map(|peer| match Client::to(peer, &self.connect) {
                Ok(client) => Some((peer.id(), client)),
                // The transport was checked at start (`Config::from_cli`).
                Err(error) => {
                    tracing::error!("cannot reach peer {peer}: {error}");
                    None
                }
            })
            .collect();
    }

    /// The reports of the current peers made in `term`.
    fn reports_in(&self, term: u64) -> Vec<&Have> {
        self.list
            .iter()
            .filter_map(|peer| self.reports.get(&peer.id()))
            .filter(|report| report.term == term)
            .map(|report| &report.have)
            .collect()
    }

    /// This broker and the peers: how many members the cluster has.
    fn members(&self) -> usize {
        self.list.len() + 1
    }
}

/// Who leads, in which term, as this broker knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    pub term: u64,
    pub leader: Option<String>,
}

/// What request handlers and tasks share about the cluster.
pub struct Cluster {
    me: String,
    /// The peer list at start (`--peers`, `--join`): what run-time member
    /// changes apply to.
    seed: Vec<PeerAddr>,
    table: Mutex<PeerTable>,
    /// Ticks whenever a peer reports what it holds or, in leader mode, the
    /// leader what a majority holds.
    reported: watch::Sender<u64>,
    leadership: watch::Receiver<Leadership>,
    inputs: mpsc::UnboundedSender<Input>,
    /// When this broker started: a peer not heard from within
    /// `RECOVERY_DEADLINE` of it is not waited for to learn its own history.
    started: Instant,
    /// Whether writes wait for peers too far behind.
    pacing: Mutex<Pacing>,
}

/// The election's state machine and channels, until `spawn` starts its task.
pub struct ElectionParts {
    inputs: mpsc::UnboundedReceiver<Input>,
    leadership: watch::Sender<Leadership>,
}

impl Cluster {
    /// `max_lag`: how many of this broker's events a live peer may lack
    /// before writes wait for it; `connect`: how peers are reached.
    pub fn new(
        me: &str,
        peers: &[PeerAddr],
        max_lag: u64,
        connect: Connect,
    ) -> (Cluster, ElectionParts) {
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (leadership_tx, leadership) = watch::channel(Leadership::default());
        let cluster = Cluster {
            me: me.to_string(),
            seed: peers.to_vec(),
            table: Mutex::new(PeerTable::new(peers, connect)),
            reported: watch::Sender::new(0),
            leadership,
            inputs: inputs_tx,
            started: Instant::now(),
            pacing: Mutex::new(Pacing::new(max_lag, PACING_PATIENCE)),
        };
        let parts = ElectionParts {
            inputs,
            leadership: leadership_tx,
        };
        (cluster, parts)
    }

    fn table(&self) -> MutexGuard<'_, PeerTable> {
        lock(&self.table)
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether `id` is one of this broker's peers.
    pub fn knows(&self, id: &str) -> bool {
        self.table().clients.contains_key(id)
    }

    /// The current peers.
    pub fn peers(&self) -> Vec<PeerAddr> {
        self.table().list.clone()
    }

    /// Applies the members added and removed at run time to the seed;
    /// returns the peers that are new.
    pub fn apply_members(&self, changes: &[(PeerAddr, bool)]) -> Vec<PeerAddr> {
        let mut list: Vec<PeerAddr> = self.seed.clone();
        for (peer, present) in changes {
            list.retain(|known| known != peer);
            if *present {
                list.push(peer.clone());
            }
        }
        list.retain(|peer| peer.id() != self.me);
        let added: Vec<PeerAddr> = {
            let mut table = self.table();
            let added: Vec<PeerAddr> = list
                .iter()
                .filter(|peer| !table.list.contains(peer))
                .cloned()
                .collect();
            if added.is_empty() && list.len() == table.list.len() {
                return added;
            }
            table.set_list(&list);
            added
        };
        let ids: Vec<String> = list.iter().map(PeerAddr::id).collect();
        tracing::info!("members: {ids:?}");
        self.feed(Input::Members { peers: ids });
        added
    }

    pub fn leadership(&self) -> Leadership {
        self.leadership.borrow().clone()
    }

    /// This broker (alive) and every peer with its liveness.
    pub fn members(&self) -> Vec<Member> {
        let now = Instant::now();
        let me = Member {
            id: self.me.clone(),
            alive: true,
            lag: None,
        };
        let table = self.table();
        let peers = table.list.iter().map(|peer| {
            let id = peer.id();
            Member {
                alive: table.liveness.is_alive(&id, now),
                id,
                lag: None,
            }
        });
        std::iter::once(me).chain(peers).collect()
    }

    /// `members`, each peer with its lag behind `own` (what this broker
    /// holds; see `peer_lags`).
    pub fn members_with_lags(&self, own: &Have) -> Vec<Member> {
        let lags: HashMap<String, u64> = self
            .peer_lags(own)
            .into_iter()
            .map(|(id, _, lag)| (id, lag))
            .collect();
        self.members()
            .into_iter()
            .map(|member| Member {
                lag: lags.get(&member.id).copied(),
                ..member
            })
            .collect()
    }

    /// Whether `peer` was heard from within `DEAD_AFTER`.
    fn is_alive(&self, peer: &str) -> bool {
        self.table().liveness.is_alive(peer, Instant::now())
    }

    /// A peer answered or called: it is alive, and reports its term and
    /// leader (a term out of range or too far above ours is not taken in).
    pub fn heard_from(&self, peer: &str, term: u64, leader: Option<String>) {
        self.table().liveness.heard(peer, Instant::now());
        let own = self.leadership().term;
        if term > MAX_STAMP || !within_reach(term, own) {
            tracing::warn!(
                "ignored term {term} from {peer}: too far above this broker's term {own}"
            );
            return;
        }
        self.feed(Input::Heartbeat {
            from: peer.to_string(),
            term,
            leader,
        });
    }

    /// Whether this broker, holding its own events up to `ours`, holds
    /// every event of its own that its peers hold: it has heard from every
    /// peer (or waited `RECOVERY_DEADLINE` for those it has not), and none
    /// of them holds one of its events that it lacks.
    pub fn holds_own_history(&self, ours: u64) -> bool {
        let table = self.table();
        let heard_all = table
            .list
            .iter()
            .all(|peer| table.reports.contains_key(&peer.id()));
        let waited = self.started.elapsed() >= RECOVERY_DEADLINE;
        let theirs = table
            .reports
            .values()
            .filter_map(|report| report.have.get(&self.me))
            .max()
            .copied()
            .unwrap_or(0);
        (heard_all || waited) && ours >= theirs
    }

    /// Waits while a live peer lacks too many of this broker's events
    /// (`own_seq` tells how many there are), at most `PACING_PATIENCE`.
    pub async fn paced(&self, own_seq: impl Fn() -> u64) {
        if self.table().list.is_empty() {
            return;
        }
        let mut updates = self.reported.subscribe();
        let caught_up = async {
            while self.holds_back(own_seq()) {
                // Every sync answer ticks; the heartbeat bounds how late a
                // peer that went silent stops counting.
                let _ = tokio::time::timeout(HEARTBEAT, updates.changed()).await;
            }
        };
        // Past the patience the write goes ahead (see `pacing`).
        let _ = tokio::time::timeout(PACING_PATIENCE, caught_up).await;
    }

    /// Whether a write waits now, this broker having `own` events.
    fn holds_back(&self, own: u64) -> bool {
        let now = Instant::now();
        let table = self.table();
        let peers: Vec<PeerLag<'_>> = table
            .reports
            .iter()
            .filter(|(id, _)| table.clients.contains_key(*id))
            .map(|(id, report)| PeerLag {
                id,
                lag: own.saturating_sub(report.have.get(&self.me).copied().unwrap_or(0)),
                alive: table.liveness.is_alive(id, now),
            })
            .collect();
        lock(&self.pacing).holds_back(&peers, now)
    }

    /// A peer answered a sync holding `have`, in `term`; `lost_own`: it
    /// holds fewer of its own events than this broker held when it asked.
    pub fn peer_holds(
        &self,
        peer: &str,
        (have, synced): (Have, Option<Have>),
        term: u64,
        lost_own: bool,
    ) {
        let report = Report {
            synced: synced.unwrap_or_else(|| have.clone()),
            have,
            term,
            lost_own,
        };
        self.table().reports.insert(peer.to_string(), report);
        self.reported.send_modify(|updates| *updates += 1);
    }

    /// Per origin, the seq up to which a majority (this broker with `mine`
    /// and the peers in its term) holds every event.
    pub fn commit_vector(&self, mine: &Have) -> Have {
        let term = self.leadership().term;
        let table = self.table();
        quorum::commit_vector(mine, &table.reports_in(term), table.members())
    }

    /// Leader mode, on a follower: what the current leader last said is
    /// committed in the current term.
    pub fn leader_commit(&self) -> Option<Have> {
        let term = self.leadership().term;
        match &self.table().leader_commit {
            Some((their_term, committed)) if *their_term == term => Some(committed.clone()),
            _ => None,
        }
    }

    /// A commit vector from `from` leading `term`: taken only from the
    /// leader this broker follows in that very term (a leader that comes
    /// back in a new term is not followed on its word before this broker
    /// has moved to that term).
    pub fn leader_committed(&self, from: &str, term: u64, committed: Have) {
        let leadership = self.leadership();
        if leadership.leader.as_deref() != Some(from) || leadership.term != term {
            return;
        }
        let known = Some((term, committed));
        let mut table = self.table();
        if table.leader_commit != known {
            table.leader_commit = known;
            drop(table);
            self.reported.send_modify(|updates| *updates += 1);
        }
    }

    /// Ticks whenever a peer tells what it holds or, in leader mode, the
    /// leader what a majority holds.
    pub fn watch_peers(&self) -> watch::Receiver<u64> {
        self.reported.subscribe()
    }

    /// Changes whenever the term or the leader does.
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Whether this broker leads.
    pub fn is_leader(&self) -> bool {
        self.leadership().leader.as_deref() == Some(self.me.as_str())
    }

    /// The leader and its client, when another broker leads.
    pub fn leader_client(&self) -> Option<(String, Client)> {
        let leader = self.leadership().leader?;
        let client = self.client(&leader)?;
        Some((leader, client))
    }

    /// Sends a request on to the leader and returns its answer, with the
    /// leader's id; `None` when no leader can be reached or it falls silent
    /// meanwhile (see `while_alive`).
    pub async fn forward_to_leader(
        &self,
        request: ForwardedRequest<'_>,
    ) -> Option<(String, Forwarded)> {
        let Some((leader, client)) = self.leader_client() else {
            tracing::debug!("cannot forward a request: no leader known");
            return None;
        };
        let Some(answer) = self.while_alive(&leader, client.forward(request)).await else {
            tracing::debug!("cannot forward a request: leader {leader} is silent");
            return None;
        };
        let answer = answer
            .inspect_err(|error| {
                tracing::debug!("forwarding a request to {leader} failed: {error}")
            })
            .ok()?;
        Some((leader, answer))
    }

    /// Up to which seq `peer` holds its own events as it answers now (an
    /// empty sync, as a heartbeat); `None` when it does not answer.
    pub async fn holds_now(&self, peer: &str) -> Option<u64> {
        let answer = self
            .client(peer)?
            .sync(&self.heartbeat(), PEER_TIMEOUT)
            .await
            .inspect_err(|error| tracing::debug!("asking {peer} what it holds: {error}"))
            .ok()?;
        Some(answer.have.get(peer).copied().unwrap_or(0))
    }

    /// A sync without events: this broker's term and leader.
    pub fn heartbeat(&self) -> SyncRequest<EncodedEvent> {
        let leadership = self.leadership();
        SyncRequest {
            from: self.me.clone(),
            term: leadership.term,
            leader: leadership.leader,
            events: Vec::new(),
            committed: None,
        }
    }

    /// Runs `call` to the peer `leader` while it is alive: `None` once it
    /// has been silent for `DEAD_AFTER`, so that a write forwarded to a
    /// leader cut off from this broker fails within its deadline instead of
    /// waiting for the heal. Only the leader's answer tells whether the
    /// write committed, so a change of leader alone does not end the wait
    /// (the old leader answers within its own deadline).
    pub async fn while_alive<T>(&self, leader: &str, call: impl Future<Output = T>) -> Option<T> {
        let silent = async {
            let mut every = tokio::time::interval(LIVENESS_CHECK);
            loop {
                every.tick().await;
                if !self.is_alive(leader) {
                    return;
                }
            }
        };
        tokio::select! {
            answer = call => Some(answer),
            () = silent => None,
        }
    }

    /// Whether a majority of the members (this broker included) is alive.
    pub fn has_quorum(&self) -> bool {
        let now = Instant::now();
        let table = self.table();
        let alive = table
            .list
            .iter()
            .filter(|peer| table.liveness.is_alive(&peer.id(), now))
            .count();
        quorum::is_majority(alive + 1, table.members())
    }

    /// Whether a majority of the members (this broker included) told this
    /// broker in its current term what they hold, and it holds all of that
    /// (`mine`): a new leader first collects what a majority holds, so it
    /// never orders a write before an earlier acknowledged one. Reports of
    /// an older term do not count: they may be from before a partition.
    pub fn holds_what_a_majority_holds(&self, mine: &Have) -> bool {
        let term = self.leadership().term;
        let table = self.table();
        let reports = table.reports_in(term);
        quorum::holds_all(mine, &reports) && quorum::is_majority(reports.len() + 1, table.members())
    }

    /// Waits until a majority of the members (this broker included) holds
    /// this broker's events up to `seq` while in `term` (a peer that has
    /// moved on to another term does not count); `no_quorum` after
    /// `QUORUM_WAIT`, or at once when this broker stops leading `term`
    /// (its write can no longer be acknowledged by a leader: the client
    /// may as well try the next one now).
    pub async fn replicated_to_majority(&self, seq: u64, term: u64) -> Result<(), ApiError> {
        let replicated = || {
            let table = self.table();
            let holders = quorum::holders(&table.reports_in(term), &self.me, seq);
            quorum::is_majority(holders + 1, table.members())
        };
        let mut updates = self.reported.subscribe();
        let mut leadership = self.watch_leadership();
        let leads =
            |l: &Leadership| l.term == term && l.leader.as_deref() == Some(self.me.as_str());
        let replicated = tokio::select! {
            seen = tokio::time::timeout(QUORUM_WAIT, updates.wait_for(|_| replicated())) => {
                seen.is_ok_and(|seen| seen.is_ok())
            }
            _ = leadership.wait_for(|l| !leads(l)) => false,
        };
        if replicated {
            Ok(())
        } else {
            Err(ApiError::NoQuorum)
        }
    }

    /// Per peer: whether it is alive, and how many of the events in `own`
    /// (what this broker holds) it has not reported holding. Its own events
    /// count only while it has lost some: its report is up to a heartbeat
    /// old, and it made the newer ones itself.
    pub fn peer_lags(&self, own: &Have) -> Vec<(String, bool, u64)> {
        let now = Instant::now();
        let table = self.table();
        table
            .list
            .iter()
            .map(|peer| {
                let id = peer.id();
                let report = table.reports.get(&id);
                // A peer not heard from holds nothing, as far as this broker knows.
                let lost_own = report.is_none_or(|report| report.lost_own);
                let left_out: HashSet<String> =
                    (!lost_own).then(|| id.clone()).into_iter().collect();
                let reported = report.map(|report| &report.have);
                let lag = gathering::lacking(reported, own, &left_out);
                (id.clone(), table.liveness.is_alive(&id, now), lag)
            })
            .collect()
    }

    /// Per origin, the seq up to which every peer holds every event on
    /// disk; `None` for a broker alone. A peer not heard from holds nothing
    /// yet.
    pub fn replicated(&self) -> Option<Have> {
        let table = self.table();
        let reports: Vec<Option<&Have>> = table
            .list
            .iter()
            .map(|peer| table.reports.get(&peer.id()).map(|report| &report.synced))
            .collect();
        quorum::floor(&reports)
    }

    /// A call to a peer failed; reports it down to the election once it has
    /// been silent for too long.
    pub fn failed(&self, peer: &str) {
        let went_down = self.table().liveness.went_down(peer, Instant::now());
        if went_down {
            tracing::warn!("peer {peer} is down");
            self.feed(Input::PeerDown {
                peer: peer.to_string(),
            });
        }
    }

    /// Hands an input to the election task.
    pub fn feed(&self, input: Input) {
        // Fails only once the election task has stopped, at shutdown.
        let _ = self.inputs.send(input);
    }

    fn client(&self, peer: &str) -> Option<Client> {
        self.table().clients.get(peer).cloned()
    }
}

/// Starts the election task, one replicator per peer, and the deadline for
/// learning this broker's own history.
pub fn spawn(app: web::Data<AppState>, parts: ElectionParts) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(driver::run(app.clone(), parts)),
        tokio::spawn(recovery_deadline(app.clone())),
    ];
    tasks.push(tokio::spawn(members::run(app.clone())));
    tasks.push(tokio::spawn(members::join(app.clone())));
    tasks
}

/// At the deadline, a broker without its history stops waiting for the
/// peers it has not heard from (a broker that heard from none is new).
async fn recovery_deadline(app: web::Data<AppState>) {
    tokio::time::sleep(RECOVERY_DEADLINE).await;
    app.check_own_history();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::have;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr {
            host: "h".to_string(),
            port,
        }
    }

    #[test]
    fn replicated_is_what_every_peer_holds() {
        let (alone, _) = Cluster::new("h:1", &[], 100, Connect::default());
        assert_eq!(alone.replicated(), None);

        let (cluster, _) = Cluster::new("h:1", &[peer(2), peer(3)], 100, Connect::default());
        assert_eq!(cluster.replicated(), Some(Have::new()));
        cluster.peer_holds("h:2", (have(&[("h:1", 9), ("h:2", 4)]), None), 1, false);
        assert_eq!(
            cluster.replicated(),
            Some(have(&[("h:1", 0), ("h:2", 0)])),
            "h:3 was not heard from"
        );
        cluster.peer_holds("h:3", (have(&[("h:1", 7), ("h:3", 2)]), None), 1, false);
        assert_eq!(cluster.replicated(), Some(have(&[("h:1", 7), ("h:2", 0)])));
    }

    #[test]
    fn replicated_counts_what_a_peer_holds_on_disk() {
        let (cluster, _) = Cluster::new("h:1", &[peer(2)], 100, Connect::default());
        let held = have(&[("h:1", 9)]);
        cluster.peer_holds("h:2", (held.clone(), Some(have(&[("h:1", 6)]))), 1, false);
        assert_eq!(cluster.replicated(), Some(have(&[("h:1", 6)])));
        let lag = cluster.peer_lags(&have(&[("h:1", 9)]))[0].2;
        assert_eq!(lag, 0, "it holds them all, if not all on disk yet");
    }

    #[test]
    fn a_peer_lags_by_its_own_events_only_when_it_lost_them() {
        let (cluster, _) = Cluster::new("h:1", &[peer(2)], 100, Connect::default());
        let own = have(&[("h:1", 10), ("h:2", 9), ("h:3", 6)]);
        let lag = |cluster: &Cluster| cluster.peer_lags(&own)[0].2;
        assert_eq!(lag(&cluster), 25, "not heard from: it lacks everything");
        // Its report is older than the events it made since; the other
        // origins count.
        let report = have(&[("h:1", 7), ("h:2", 4), ("h:3", 5)]);
        cluster.peer_holds("h:2", (report.clone(), None), 1, false);
        assert_eq!(lag(&cluster), 3 + 1);
        cluster.peer_holds("h:2", (report, None), 1, true);
        assert_eq!(lag(&cluster), 3 + 1 + 5, "it lost 5 of its own");
    }

    #[test]
    fn a_broker_holds_its_history_once_every_peer_told_what_it_holds_of_it() {
        let (cluster, _) = Cluster::new("h:1", &[peer(2), peer(3)], 100, Connect::default());
        assert!(!cluster.holds_own_history(0), "no peer heard from yet");
        cluster.peer_holds("h:2", (have(&[("h:2", 4)]), None), 1, false);
        assert!(!cluster.holds_own_history(0), "h:3 may hold events of ours");
        cluster.peer_holds("h:3", (have(&[("h:1", 7)]), None), 1, false);
        assert!(!cluster.holds_own_history(6), "h:3 holds our seq 7");
        assert!(cluster.holds_own_history(7));
    }

    #[test]
    fn a_new_leader_holds_what_a_majority_reported_in_its_term() {
        let (cluster, _) = Cluster::new("h:1", &[peer(2), peer(3)], 100, Connect::default());
        let mine = have(&[("h:1", 4), ("h:2", 6)]);
        assert!(!cluster.holds_what_a_majority_holds(&mine), "no report");
        // A report of another term (from before a partition) does not count.
        cluster.peer_holds("h:2", (have(&[("h:2", 6)]), None), 3, false);
        assert!(!cluster.holds_what_a_majority_holds(&mine));
        cluster.peer_holds("h:3", (have(&[("h:2", 7)]), None), 0, false);
        assert!(
            !cluster.holds_what_a_majority_holds(&mine),
            "h:3 holds more"
        );
        // An origin reported at 0 is held (a broker that recorded nothing).
        cluster.peer_holds(
            "h:3",
            (have(&[("h:1", 4), ("h:2", 6), ("h:3", 0)]), None),
            0,
            false,
        );
        assert!(cluster.holds_what_a_majority_holds(&mine));
    }

    #[test]
    fn a_commit_vector_counts_only_from_the_leader_followed_in_its_term() {
        let (cluster, parts) = Cluster::new("h:1", &[peer(2), peer(3)], 100, Connect::default());
        let follow = |term, leader: &str| {
            parts.leadership.send_replace(Leadership {
                term,
                leader: Some(leader.to_string()),
            });
        };
        follow(5, "h:3");
        cluster.leader_committed("h:2", 5, have(&[("h:2", 4)]));
        assert_eq!(cluster.leader_commit(), None, "not the leader");
        // The leader come back in a new term this broker has not seen yet.
        cluster.leader_committed("h:3", 7, have(&[("h:3", 9)]));
        assert_eq!(cluster.leader_commit(), None, "not its term yet");
        cluster.leader_committed("h:3", 5, have(&[("h:3", 6)]));
        assert_eq!(cluster.leader_commit(), Some(have(&[("h:3", 6)])));
        follow(8, "h:3");
        assert_eq!(cluster.leader_commit(), None, "a vector of an older term");
    }

    #[test]
    fn the_commit_vector_is_what_a_majority_holds() {
        let (cluster, _) = Cluster::new(
            "h:1",
            &[peer(2), peer(3), peer(4), peer(5)],
            100,
            Connect::default(),
        );
        let mine = have(&[("h:1", 10), ("h:2", 3)]);
        // Alone of five: nothing is held by a majority (3).
        assert_eq!(
            cluster.commit_vector(&mine),
            have(&[("h:1", 0), ("h:2", 0)])
        );
        // Peers of term 0 (the term of a fresh cluster view) count.
        cluster.peer_holds("h:2", (have(&[("h:1", 8), ("h:2", 3)]), None), 0, false);
        cluster.peer_holds("h:3", (have(&[("h:1", 6)]), None), 0, false);
        assert_eq!(
            cluster.commit_vector(&mine),
            have(&[("h:1", 6), ("h:2", 0)])
        );
        // A peer in another term does not count.
        cluster.peer_holds("h:4", (have(&[("h:1", 10), ("h:2", 3)]), None), 7, false);
        assert_eq!(
            cluster.commit_vector(&mine),
            have(&[("h:1", 6), ("h:2", 0)])
        );
        cluster.peer_holds("h:5", (have(&[("h:1", 9), ("h:2", 3)]), None), 0, false);
        assert_eq!(
            cluster.commit_vector(&mine),
            have(&[("h:1", 8), ("h:2", 3)])
        );
    }
}
