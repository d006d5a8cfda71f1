//! Broker configuration: the command line of `API.md` §1 and what it resolves to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use client::peer_auth::ClusterKey;
use client::{load_peers, Connect, PeerAddr};

use crate::names::BrokerId;

/// The default peer list, read from the working directory when present.
const DEFAULT_PEERS_FILE: &str = "globalState.csv";

/// `broker --host <HOST> --port <PORT> ...`, or `broker token`.
#[derive(Debug, Parser)]
#[command(
    name = "broker",
    version,
    about = "A rumor publish/subscribe broker",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Host name this broker is known by (its id is <host>:<port>)
    #[arg(long, required = true)]
    pub host: Option<String>,
    /// Port to listen on
    #[arg(long, required = true)]
    pub port: Option<u16>,
    /// Peer list, one host,port per line [default: globalState.csv when it exists]
    #[arg(long, value_name = "CSV")]
    pub peers: Option<PathBuf>,
    /// Join a running cluster through one of its members (HOST:PORT)
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_member)]
    pub join: Option<PeerAddr>,
    /// Data directory [default: data/<host>_<port>]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replication mode
    #[arg(long, value_enum, default_value_t = Mode::Gossip)]
    pub mode: Mode,
    /// fsync: acknowledge after the commit is on disk; normal: faster, not power-loss safe
    #[arg(long, value_enum, default_value_t = Durability::Fsync)]
    pub durability: Durability,
    /// Delete messages older than this when no subscriber still needs them (e.g. 30s, 10m, 7d)
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Largest accepted message payload in bytes
    #[arg(long, value_name = "N", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_payload_bytes: u64,
    /// Writes wait while a live peer lacks more than this many of this broker's events
    #[arg(long, value_name = "EVENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_replica_lag: u64,
    /// Writes waiting for the writer at most before client writes get 503 overloaded
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_write_queue: u64,
    /// A publish repeating the msg_id of one stored this recently stores nothing (e.g. 2m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,
    /// Shared secret (at least 32 bytes) authenticating the brokers to each other
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Client principals and their token hashes (TOML); clients then need a token
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Certificate authorities (PEM bundle) the peers' certificates are checked against [default: the system's]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new random client token and the token_sha256 line for --auth-file
    Token,
}

/// How a broker reaches its peers: over HTTPS when it serves HTTPS
/// (trusting `ca`, or the system's roots), signing with the cluster key.
fn peer_connect(
    https: bool,
    ca: Option<&Path>,
    cluster_key: Option<ClusterKey>,
) -> Result<Connect, String> {
    let connect = match (https, ca) {
        (false, _) => Connect::default(),
        (true, Some(ca)) => Connect::default().tls_ca(ca).map_err(|e| e.to_string())?,
        (true, None) => Connect::default().system_tls().map_err(|e| e.to_string())?,
    };
    Ok(match cluster_key {
        Some(key) => connect.cluster_key(key),
        None => connect,
    })
}

/// `localhost`, `127.0.0.0/8` or `::1` (API.md §5.1).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `HOST:PORT` as a peer address.
fn parse_member(text: &str) -> Result<PeerAddr, String> {
    match BrokerId::parse(text) {
        Some(id) if id.port != 0 => Ok(PeerAddr {
            host: id.host.to_string(),
            port: id.port,
        }),
        _ => Err(format!(
            "expected HOST:PORT (a host without spaces, a port of 1-65535), not {text:?}"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Gossip,
    Leader,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gossip => "gossip",
            Mode::Leader => "leader",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Gossip, Mode::Leader]
            .into_iter()
            .find(|mode| mode.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    Fsync,
    Normal,
}

/// Everything a running broker needs to know, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// `<host>:<port>` exactly as given.
    pub id: String,
    /// This broker's address.
    pub host: String,
    pub port: u16,
    /// The other brokers of the cluster at start (this broker's own line
    /// removed; the member to join added).
    pub peers: Vec<PeerAddr>,
    /// The member to join through, with `--join`.
    pub join: Option<PeerAddr>,
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub durability: Durability,
    pub retention: Duration,
    pub max_payload_bytes: usize,
    /// How many of this broker's events a live peer may lack before writes
    /// wait for it (see `cluster::pacing`).
    pub max_replica_lag: u64,
    /// Client writes waiting for the writer at most (API.md §5.5).
    pub max_write_queue: usize,
    /// How long a stored `msg_id` makes a repeat a duplicate (API.md §6.1).
    pub dedup_window: Duration,
    /// How this broker reaches its peers: HTTP or HTTPS, signed with the
    /// cluster key when there is one.
    pub peer_connect: Connect,
    pub cluster_key: Option<ClusterKey>,
    pub auth_file: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// `dedup_window` in milliseconds.
    pub fn dedup_window_ms(&self) -> i64 {
        i64::try_from(self.dedup_window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Resolves defaults (the peer list file, the data directory), reads
    /// the cluster key, and checks that peers outside this machine are only
    /// named with a cluster key. The error is one line.
    pub fn from_cli(cli: Cli) -> Result<Config, String> {
        let (Some(host), Some(port)) = (cli.host, cli.port) else {
            return Err("--host and --port are required".to_string());
        };
        let me = PeerAddr { host, port };
        let peers_file = cli.peers.or_else(|| {
            let default = PathBuf::from(DEFAULT_PEERS_FILE);
            default.exists().then_some(default)
        });
        let mut peers = match peers_file {
            Some(path) => load_peers(&path).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        if let Some(join) = cli.join.clone().filter(|join| !peers.contains(join)) {
            peers.push(join);
        }
        let peers: Vec<PeerAddr> = peers.into_iter().filter(|p| *p != me).collect();
        let cluster_key = cli
            .cluster_key_file
            .as_deref()
            .map(ClusterKey::load)
            .transpose()
            .map_err(|e| e.to_string())?;
        if cluster_key.is_none() {
            if let Some(remote) = peers.iter().find(|peer| !is_loopback(&peer.host)) {
                return Err(format!(
                    "peer {remote} is not on this machine: brokers across machines need --cluster-key-file"
                ));
            }
            // Adding itself is an admin's change: the member takes it
            // from a broker only with the cluster key's signature.
            if cli.join.is_some() && cli.auth_file.is_some() {
                return Err("--join with --auth-file needs --cluster-key-file".to_string());
            }
        }
        let tls = cli.tls_cert.zip(cli.tls_key);
        let peer_connect = peer_connect(tls.is_some(), cli.tls_ca.as_deref(), cluster_key.clone())?;
        Ok(Config {
            id: me.id(),
            host: me.host.clone(),
            port: me.port,
            peers,
            join: cli.join,
            data_dir: cli
                .data_dir
                .unwrap_or_else(|| PathBuf::from("data").join(format!("{}_{}", me.host, me.port))),
            mode: cli.mode,
            durability: cli.durability,
            retention: cli.retention,
            max_payload_bytes: usize::try_from(cli.max_payload_bytes).unwrap_or(usize::MAX),
            max_replica_lag: cli.max_replica_lag,
            max_write_queue: usize::try_from(cli.max_write_queue).unwrap_or(usize::MAX),
            dedup_window: cli.dedup_window,
            peer_connect,
            cluster_key,
            auth_file: cli.auth_file,
            tls,
        })
    }

    /// This broker's address.
    pub fn me(&self) -> PeerAddr {
        PeerAddr {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// Request bodies buffered at once at most (API.md §5.5): room for
    /// several of the largest.
    pub fn max_buffered_body_bytes(&self) -> usize {
        const FLOOR: usize = 256 * 1024 * 1024;
        self.max_body_bytes().saturating_mul(4).max(FLOOR)
    }

    /// Largest accepted request body: room for a batch of large payloads.
    pub fn max_body_bytes(&self) -> usize {
        const FLOOR: usize = 16 * 1024 * 1024;
        self.max_payload_bytes.saturating_mul(8).max(FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_localhost_127_8_and_ipv6_one() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "localhost.example",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
