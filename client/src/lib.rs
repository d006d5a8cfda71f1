//! rumor's public wire format and a typed client for it.
//!
//! `wire` holds every JSON body of the HTTP API, `peer` those of the
//! brokers' own protocol, `delivery` the delivery logs of the CLIs and
//! `bench check`'s report and `bench` the reports of the other `bench`
//! subcommands (the only types in the workspace that derive
//! `Serialize`), `envelope` the end-to-end encryption of payloads
//! (`--key-file`), `peers` reads `globalState.csv`,
//! `http` is the typed async client, `connect` its transport (HTTP or
//! HTTPS) and credentials, `peer_auth` the brokers' signatures with the
//! cluster key, and `cli` holds what the command-line programs share:
//! broker selection and connection flags, and failover.

pub mod bench;
pub mod cli;
pub mod connect;
pub mod delivery;
pub mod envelope;
pub mod http;
pub mod peer;
pub mod peer_auth;
pub mod peers;
pub mod wire;

pub use connect::Connect;
pub use http::{Client, ClientError};
pub use peers::{load_peers, PeerAddr, PeersError};
