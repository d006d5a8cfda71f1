//! Broker configuration: the command line of `API.md` §1 and what it resolves to.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use client::{load_peers, PeerAddr, PeersError};

/// The default peer list, read from the working directory when present.
const DEFAULT_PEERS_FILE: &str = "globalState.csv";

/// `broker --host <HOST> --port <PORT> ...`
#[derive(Debug, Parser)]
#[command(name = "broker", version, about = "A rumor publish/subscribe broker")]
pub struct Cli {
    /// Host name this broker is known by (its id is <host>:<port>)
    #[arg(long)]
    pub host: String,
    /// Port to listen on
    #[arg(long)]
    pub port: u16,
    /// Peer list, one host,port per line [default: globalState.csv when it exists]
    #[arg(long, value_name = "CSV")]
    pub peers: Option<PathBuf>,
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
    /// The other brokers of the cluster (this broker's own line removed).
    pub peers: Vec<PeerAddr>,
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub durability: Durability,
    pub retention: Duration,
    pub max_payload_bytes: usize,
}

impl Config {
    /// Resolves defaults: the peer list file and the data directory.
    pub fn from_cli(cli: Cli) -> Result<Config, PeersError> {
        let me = PeerAddr {
            host: cli.host,
            port: cli.port,
        };
        let peers_file = cli.peers.or_else(|| {
            let default = PathBuf::from(DEFAULT_PEERS_FILE);
            default.exists().then_some(default)
        });
        let peers = match peers_file {
            Some(path) => load_peers(&path)?,
            None => Vec::new(),
        };
        Ok(Config {
            id: me.id(),
            peers: peers.into_iter().filter(|p| *p != me).collect(),
            data_dir: cli
                .data_dir
                .unwrap_or_else(|| PathBuf::from("data").join(format!("{}_{}", me.host, me.port))),
            mode: cli.mode,
            durability: cli.durability,
            retention: cli.retention,
            max_payload_bytes: usize::try_from(cli.max_payload_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Largest accepted request body: room for a batch of large payloads.
    pub fn max_body_bytes(&self) -> usize {
        const FLOOR: usize = 16 * 1024 * 1024;
        self.max_payload_bytes.saturating_mul(8).max(FLOOR)
    }
}
