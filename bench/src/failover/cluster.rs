//! The three broker processes of `bench failover`: started on loopback
//! ports with one peer list, a data directory each and their stderr in a
//! log file each; killed with SIGKILL and restarted on the same port and
//! data directory. Dropping the cluster kills every process it started, so
//! every way out of a run (an error, Ctrl-C) stops them.

use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ClientError, PeerAddr};

use crate::Error;

/// The brokers' host.
const HOST: &str = "127.0.0.1";
/// Brokers in the cluster: a majority survives one of them down.
const BROKERS: u16 = 3;
/// How long a broker may take to answer `/health` once started.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long the live brokers may take to agree on a leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(15);
/// How long one probe of a broker may take: a dying broker must not stall
/// a wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between probes.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

/// How to start the brokers.
pub struct Settings<'a> {
    /// The `broker` program.
    pub program: &'a Path,
    /// Ports `base_port` to `base_port + 2`, or three free ones.
    pub base_port: Option<u16>,
    /// `--mode`.
    pub mode: &'a str,
    /// `--durability`.
    pub durability: &'a str,
    /// Where the peer list and the data directories go.
    pub data_dir: &'a Path,
    /// Where the brokers' logs go, `broker-<port>.log`.
    pub log_dir: &'a Path,
}

/// Three running brokers that name each other.
pub struct Cluster {
    brokers: Vec<Broker>,
}

/// One broker process and how to start it again.
struct Broker {
    address: PeerAddr,
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    client: Client,
    child: Option<Child>,
}

impl Cluster {
    /// Starts the three brokers at once and waits until each answers
    /// `/health` (the caller then waits for their leader:
    /// [`Cluster::agreed_leader`]).
    pub async fn start(settings: &Settings<'_>) -> Result<Cluster, Error> {
        let ports = ports(settings.base_port)?;
        let peers = settings.data_dir.join("peers.csv");
        let lines: String = ports
            .iter()
            .map(|port| format!("{HOST},{port}\n"))
            .collect();
        std::fs::write(&peers, lines).map_err(|e| failed("cannot write the peer list", e))?;
        let brokers = ports
            .iter()
            .map(|&port| Broker::new(settings, port, &peers))
            .collect::<Result<_, _>>()?;
        let mut cluster = Cluster { brokers };
        for broker in &mut cluster.brokers {
            broker.spawn()?;
        }
        for broker in &mut cluster.brokers {
            broker.wait_healthy().await?;
        }
        Ok(cluster)
    }

    /// Every broker's address, in id order.
    pub fn addresses(&self) -> Vec<PeerAddr> {
        self.brokers.iter().map(|b| b.address.clone()).collect()
    }

    /// The leader that every running broker names (`GET /cluster`), once
    /// they agree on one that runs.
    pub async fn agreed_leader(&self) -> Result<String, Error> {
        let deadline = Instant::now() + LEADER_DEADLINE;
        loop {
            let seen = self.leaders_seen().await;
            if let Some(leader) = named_by_all(&seen) {
                if self.running(leader).is_some() {
                    return Ok(leader.clone());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Failed(format!(
                    "the brokers did not agree on a leader within {LEADER_DEADLINE:?} (they named {seen:?})"
                )));
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
    }

    /// The leader each running broker names, `None` where it names none
    /// or does not answer.
    async fn leaders_seen(&self) -> Vec<Option<String>> {
        let mut seen = Vec::new();
        for broker in self.brokers.iter().filter(|b| b.child.is_some()) {
            let info = probe(broker.client.cluster()).await;
            seen.push(info.ok().and_then(|info| info.leader));
        }
        seen
    }

    /// SIGKILL to broker `id`.
    pub fn kill(&mut self, id: &str) -> Result<(), Error> {
        let broker = self.running(id).ok_or_else(|| not_running(id))?;
        self.brokers[broker].kill();
        Ok(())
    }

    /// Starts the killed broker `id` again on its port and data directory
    /// and waits until it answers `/health`.
    pub async fn restart(&mut self, id: &str) -> Result<(), Error> {
        let stopped = self
            .brokers
            .iter_mut()
            .find(|b| b.address.id() == id && b.child.is_none());
        let broker =
            stopped.ok_or_else(|| Error::Failed(format!("broker {id} is not a stopped broker")))?;
        broker.spawn()?;
        broker.wait_healthy().await
    }

    /// The index of broker `id` if it runs.
    fn running(&self, id: &str) -> Option<usize> {
        self.brokers
            .iter()
            .position(|b| b.address.id() == id && b.child.is_some())
    }
}

impl Broker {
    /// A broker on `port` (not started yet), with an empty log file.
    fn new(settings: &Settings<'_>, port: u16, peers: &Path) -> Result<Broker, Error> {
        let address = PeerAddr {
            host: HOST.to_string(),
            port,
        };
        let data = settings.data_dir.join(format!("data-{port}"));
        let args: Vec<OsString> = vec![
            "--host".into(),
            HOST.into(),
            "--port".into(),
            port.to_string().into(),
            "--peers".into(),
            peers.into(),
            "--data-dir".into(),
            data.into(),
            "--mode".into(),
            settings.mode.into(),
            "--durability".into(),
            settings.durability.into(),
        ];
        let log = settings.log_dir.join(format!("broker-{port}.log"));
        File::create(&log).map_err(|e| failed(&format!("cannot create {}", log.display()), e))?;
        let client = Client::to(&address, &client::Connect::default())
            .map_err(|e| Error::Failed(e.to_string()))?;
        Ok(Broker {
            address,
            program: settings.program.to_path_buf(),
            args,
            log,
            client,
            child: None,
        })
    }

    /// Starts the process, its stderr appended to its log.
    fn spawn(&mut self) -> Result<(), Error> {
        let log = File::options()
            .append(true)
            .open(&self.log)
            .map_err(|e| failed(&format!("cannot open {}", self.log.display()), e))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_this_process(&mut command);
        let child = command
            .spawn()
            .map_err(|e| failed(&format!("cannot start {}", self.program.display()), e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the broker answers `/health`; fails with the last line
    /// of its log when it exits first or does not answer in time.
    async fn wait_healthy(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_DEADLINE;
        while probe(self.client.health()).await.is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let why = match exited {
                Some(status) => format!("exited ({status})"),
                None if Instant::now() >= deadline => {
                    format!("did not answer /health within {START_DEADLINE:?}")
                }
                None => {
                    tokio::time::sleep(PROBE_PAUSE).await;
                    continue;
                }
            };
            return Err(Error::Failed(format!(
                "broker {} {why}: {}",
                self.address.id(),
                self.last_log_line()
            )));
        }
        Ok(())
    }

    fn last_log_line(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = text.lines().rev().find(|line| !line.trim().is_empty());
        last.unwrap_or("(its log is empty)").to_string()
    }

    /// SIGKILL, and the exit reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The leader every one of `seen` names, if they agree on one.
fn named_by_all(seen: &[Option<String>]) -> Option<&String> {
    let first = seen.first()?.as_ref()?;
    seen.iter()
        .all(|l| l.as_ref() == Some(first))
        .then_some(first)
}

/// Ports `base`, `base + 1` and `base + 2`, or three that were free a
/// moment ago (bound all at once, so no two are the same), ascending.
fn ports(base: Option<u16>) -> Result<Vec<u16>, Error> {
    if let Some(base) = base {
        return (0..BROKERS)
            .map(|i| base.checked_add(i))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Usage(format!("--base-port {base}: three ports do not fit")));
    }
    let listeners = (0..BROKERS)
        .map(|_| TcpListener::bind((HOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed("cannot find a free port", e))?;
    let mut ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed("cannot find a free port", e))?;
    ports.sort_unstable();
    Ok(ports)
}

/// Makes the kernel kill the broker should this process die without
/// stopping it (killed itself, say, by a test's time limit). The signal
/// comes when the thread that started the broker ends; brokers are started
/// from the main task, which runs on the main thread.
#[cfg(target_os = "linux")]
fn die_with_this_process(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_this_process(_command: &mut Command) {}

/// `call`'s answer, or why there was none within [`PROBE_TIMEOUT`].
async fn probe<T>(call: impl Future<Output = Result<T, ClientError>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

fn failed(what: &str, error: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {error}"))
}

fn not_running(id: &str) -> Error {
    Error::Failed(format!("broker {id} is not running"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_counts_once_every_broker_names_it() {
        let some = |id: &str| Some(id.to_string());
        assert_eq!(
            named_by_all(&[some("a"), some("a")]),
            Some(&"a".to_string())
        );
        assert_eq!(named_by_all(&[some("a"), some("b")]), None);
        assert_eq!(named_by_all(&[some("a"), None]), None);
        assert_eq!(named_by_all(&[None, None]), None);
        assert_eq!(named_by_all(&[]), None);
    }

    #[test]
    fn a_base_port_gives_three_ports_in_a_row() {
        assert_eq!(ports(Some(4000)).unwrap(), [4000, 4001, 4002]);
        assert!(matches!(ports(Some(u16::MAX - 1)), Err(Error::Usage(_))));
        let free = ports(None).unwrap();
        assert_eq!(free.len(), 3);
        assert!(free.windows(2).all(|w| w[0] < w[1]), "{free:?}");
    }
}
