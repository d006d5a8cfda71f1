//! The faults of `bench failover`, at fixed points of the load's
//! `seconds`: at 1/5 SIGKILL to the leader, at 2/5 it starts again, at 3/5
//! SIGKILL to a follower, at 4/5 that one starts again. The leader is the
//! one the brokers name (`GET /cluster`) at that moment.

use std::time::Duration;

use client::PeerAddr;

use super::cluster::Cluster;
use super::load::Clock;
use crate::report::micros;
use crate::Error;

/// One of the four faults, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillLeader,
    RestartOldLeader,
    KillFollower,
    RestartFollower,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill leader",
            Fault::RestartOldLeader => "restart old leader",
            Fault::KillFollower => "kill follower",
            Fault::RestartFollower => "restart follower",
        }
    }
}

/// A fault that happened: to which broker, and when (µs since the load
/// started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happened {
    pub fault: Fault,
    pub broker: String,
    pub at_us: i64,
}

/// Kills and restarts brokers on the schedule. `clients` are the brokers
/// in the order the clients try them, the first leader first.
pub async fn inject(
    cluster: &mut Cluster,
    clients: &[PeerAddr],
    seconds: u64,
    clock: &Clock,
) -> Result<Vec<Happened>, Error> {
    let fifth = |k: u32| {
        let at = Duration::from_secs(seconds) * k / 5;
        tokio::time::sleep_until(clock.instant(micros(at)))
    };
    let mut happened = Vec::new();
    fifth(1).await;
    let leader = cluster.agreed_leader().await?;
    cluster.kill(&leader)?;
    happened.push(now(Fault::KillLeader, &leader, clock));
    fifth(2).await;
    happened.push(now(Fault::RestartOldLeader, &leader, clock));
    cluster.restart(&leader).await?;
    fifth(3).await;
    let leader = cluster.agreed_leader().await?;
    let follower = follower_to_kill(clients, &leader)
        .ok_or_else(|| Error::Failed(format!("no follower of {leader} to kill")))?;
    cluster.kill(&follower)?;
    happened.push(now(Fault::KillFollower, &follower, clock));
    fifth(4).await;
    happened.push(now(Fault::RestartFollower, &follower, clock));
    cluster.restart(&follower).await?;
    Ok(happened)
}

fn now(fault: Fault, broker: &str, clock: &Clock) -> Happened {
    Happened {
        fault,
        broker: broker.to_string(),
        at_us: clock.now_us(),
    }
}

/// The follower the clients moved to when the first leader died (the
/// second they try), so that this kill moves them again; another one if
/// that broker leads now.
fn follower_to_kill(clients: &[PeerAddr], leader: &str) -> Option<String> {
    let ids = clients.iter().map(PeerAddr::id);
    let mut followers = ids.skip(1).chain(clients.first().map(PeerAddr::id));
    followers.find(|id| id != leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ports: &[u16]) -> Vec<PeerAddr> {
        let at = |&port| PeerAddr {
            host: "h".to_string(),
            port,
        };
        ports.iter().map(at).collect()
    }

    #[test]
    fn the_follower_killed_is_the_one_the_clients_moved_to() {
        let clients = brokers(&[3, 1, 2]);
        let follower = |clients, leader| follower_to_kill(clients, leader).unwrap();
        assert_eq!(follower(&clients, "h:3"), "h:1");
        assert_eq!(follower(&clients, "h:1"), "h:2");
        assert_eq!(follower(&brokers(&[3, 1]), "h:1"), "h:3");
        assert_eq!(follower_to_kill(&brokers(&[3]), "h:3"), None);
    }
}
