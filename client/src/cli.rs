//! What the command-line programs share: choosing brokers and failing over.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::connect::{Connect, ConnectError, Token, TOKEN_ENV};
use crate::http::{Client, ClientError};
use crate::peers::{load_peers, PeerAddr, PeersError};
use crate::wire::Message;

/// `--host <HOST> --port <PORT>` or `--peers <CSV>`, and how to connect.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Broker host (with --port)
    #[arg(long, requires = "port")]
    pub host: Option<String>,
    /// Broker port (with --host)
    #[arg(long, requires = "host")]
    pub port: Option<u16>,
    /// Peer list file (host,port per line): brokers are tried in order
    #[arg(
        long,
        value_name = "CSV",
        required_unless_present = "host",
        conflicts_with_all = ["host", "port"]
    )]
    pub peers: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `--token-file`, `--tls-ca`, `--tls` (API.md §5.2, §5.3).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Read the client token from FILE [default: the RUMOR_TOKEN environment variable]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Use HTTPS, trusting the certificate authorities in FILE (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Use HTTPS, trusting the system's certificate authorities
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls: bool,
}

impl ConnectArgs {
    /// The transport and token these flags (and `RUMOR_TOKEN`) ask for.
    pub fn connect(&self) -> Result<Connect, ConnectError> {
        let connect = match (&self.tls_ca, self.tls) {
            (Some(ca), _) => Connect::default().tls_ca(ca)?,
            (None, true) => Connect::default().system_tls()?,
            (None, false) => Connect::default(),
        };
        Ok(match token(self.token_file.as_deref())? {
            Some(token) => connect.token(token),
            None => connect,
        })
    }
}

/// The token in `file`, else in `RUMOR_TOKEN`, else none.
pub fn token(file: Option<&std::path::Path>) -> Result<Option<Token>, ConnectError> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConnectError(format!("cannot read token file {}: {e}", file.display())))?;
        return Token::new(&text)
            .map(Some)
            .map_err(|e| ConnectError(format!("token file {}: {e}", file.display())));
    }
    match std::env::var(TOKEN_ENV) {
        Ok(text) => Token::new(&text)
            .map(Some)
            .map_err(|e| ConnectError(format!("{TOKEN_ENV}: {e}"))),
        Err(_) => Ok(None),
    }
}

impl BrokerArgs {
    /// A failover client over the brokers, connected as the flags say; the
    /// error is one line.
    pub fn failover(&self) -> Result<Failover, String> {
        let brokers = self.brokers().map_err(|e| e.to_string())?;
        if brokers.is_empty() {
            return Err("the peer list names no broker".to_string());
        }
        let connect = self.connect.connect().map_err(|e| e.to_string())?;
        Failover::new(&brokers, &connect).map_err(|e| e.to_string())
    }

    /// The brokers to talk to, in the order to try them.
    pub fn brokers(&self) -> Result<Vec<PeerAddr>, PeersError> {
        match (&self.host, self.port, &self.peers) {
            (Some(host), Some(port), _) => Ok(vec![PeerAddr {
                host: host.clone(),
                port,
            }]),
            (_, _, Some(path)) => load_peers(path),
            // clap's `requires` and `required_unless_present` rule this out.
            _ => Ok(Vec::new()),
        }
    }
}

/// Clients for a list of brokers; calls go to the current one and move on to
/// the next when it cannot be reached.
///
/// A program that must first set itself up on a broker (register, create a
/// topic, subscribe) uses [`Failover::call_prepared`], which repeats that
/// set-up on every broker it fails over to.
#[derive(Debug)]
pub struct Failover {
    clients: Vec<Client>,
    current: usize,
    /// The broker the set-up last ran on.
    prepared: Option<usize>,
}

impl Failover {
    pub fn new(brokers: &[PeerAddr], connect: &Connect) -> Result<Self, ConnectError> {
        Ok(Failover {
            clients: brokers
                .iter()
                .map(|broker| Client::to(broker, connect))
                .collect::<Result<_, _>>()?,
            current: 0,
            prepared: None,
        })
    }

    /// Runs `call` on the current broker, trying each other broker once when
    /// it is unreachable. Returns the last error when none answers.
    pub async fn call<T>(
        &mut self,
        call: impl AsyncFn(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let count = self.clients.len();
        let mut last_error = None;
        for attempt in 0..count {
            let index = (self.current + attempt) % count;
            match call(&self.clients[index]).await {
                Err(error) if error.is_unreachable() => last_error = Some(error),
                result => {
                    self.current = index;
                    return result;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Unreachable {
            url: String::new(),
            reason: "no brokers given".to_string(),
        }))
    }

    /// Runs the set-up `prepare` on the first broker that answers.
    pub async fn prepare(
        &mut self,
        prepare: impl AsyncFn(&Client) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        self.call(prepare).await?;
        self.prepared = Some(self.current);
        Ok(())
    }

    /// Runs `call` on a broker the set-up `prepare` ran on, running it first
    /// on a broker reached by failing over. When the call itself failed over
    /// to a broker that refused it (it had not seen the set-up yet), sets up
    /// there and tries once more.
    pub async fn call_prepared<T>(
        &mut self,
        prepare: impl AsyncFn(&Client) -> Result<(), ClientError>,
        call: impl AsyncFn(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        match self.try_prepared(&prepare, &call).await {
            Err(ClientError::Api { .. }) if !self.is_prepared() => {
                self.try_prepared(&prepare, &call).await
            }
            result => result,
        }
    }

    async fn try_prepared<T>(
        &mut self,
        prepare: &impl AsyncFn(&Client) -> Result<(), ClientError>,
        call: &impl AsyncFn(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if !self.is_prepared() {
            self.prepare(prepare).await?;
        }
        self.call(call).await
    }

    /// Whether the set-up ran on the broker calls go to now.
    fn is_prepared(&self) -> bool {
        self.prepared == Some(self.current)
    }
}

/// What a subscriber has taken in this run, per origin the highest `seq`.
///
/// A broker failed over to delivers again from the acknowledged position;
/// since each origin's messages come in `seq` order (API.md §3), what was
/// taken but not yet acknowledged is recognised here and not taken twice.
/// Shared subscriptions give an origin's messages out of order, so this
/// holds for plain subscriptions only.
#[derive(Debug, Default)]
pub struct SeenMessages {
    highest: HashMap<String, u64>,
}

impl SeenMessages {
    /// Whether `message` was taken before.
    pub fn has_seen(&self, message: &Message) -> bool {
        self.highest
            .get(&message.origin)
            .is_some_and(|&seq| message.seq <= seq)
    }

    /// Records `message` as taken (what was taken never shrinks).
    pub fn mark_seen(&mut self, message: &Message) {
        let highest = self.highest.entry(message.origin.clone()).or_default();
        *highest = (*highest).max(message.seq);
    }
}

/// Parses the command line; on bad arguments prints one line,
/// `<program>: error: <what>`, and exits 2. `--help` and `--version` print as usual.
pub fn parse_args<P: clap::Parser>() -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let program = std::env::args().next().unwrap_or_default();
            let program = std::path::Path::new(&program)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            eprintln!("{program}: error: {} (see --help)", first_line(&error));
            std::process::exit(2);
        }
    }
}

/// clap's error as one line: its first line, followed by the indented lines
/// that complete it (e.g. the missing arguments after "...not provided:").
fn first_line(error: &clap::Error) -> String {
    let rendered = error.to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut what = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if what.ends_with(':') {
        let details: Vec<&str> = lines
            .take_while(|line| line.starts_with("  "))
            .map(str::trim)
            .collect();
        what = format!("{what} {}", details.join(", "));
    }
    what
}

/// Whether trying again (on this or another broker) may succeed: no broker
/// could be reached, or one answered that it cannot take writes right now
/// (no leader yet, catching up, too busy).
pub fn is_transient(error: &ClientError) -> bool {
    error.is_unreachable()
        || matches!(
            error.code(),
            Some("no_quorum" | "unavailable" | "overloaded")
        )
}

/// 64 random bits as hex: what makes a program run's ids its own.
pub fn run_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    hex::encode(bytes)
}

/// A failed call as a command-line program reports it on its error line:
/// an API error as `<message> (<code>)`, anything else as it displays
/// (e.g. `cannot reach broker http://localhost:3000: Connection refused ...`).
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Api { code, message, .. } => format!("{message} ({code})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(origin: &str, seq: u64) -> Message {
        Message {
            id: format!("{origin}/{seq}"),
            origin: origin.to_string(),
            seq,
            topic: "t".to_string(),
            publisher: "p".to_string(),
            payload: String::new(),
            lamport: seq,
            published_at_ms: 0,
            headers: Default::default(),
            msg_id: None,
            deliveries: 1,
        }
    }

    #[test]
    fn seen_messages_are_those_at_or_below_each_origins_highest_seq() {
        let mut seen = SeenMessages::default();
        seen.mark_seen(&message("a:1", 3));
        assert!(seen.has_seen(&message("a:1", 1)));
        assert!(seen.has_seen(&message("a:1", 3)));
        assert!(!seen.has_seen(&message("a:1", 4)));
        assert!(!seen.has_seen(&message("b:1", 1)), "another origin");
    }
}
