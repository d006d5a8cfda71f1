//! The `subscriber` program (API.md §1): registers a subscriber, subscribes
//! it to a topic, then long-polls forever, printing each message and
//! acknowledging it only once it is printed and flushed.
//!
//! Failover: calls move to the next listed broker when one cannot be reached,
//! and the program sets up again on the broker it lands on. The new broker
//! delivers from the acknowledged position, so messages printed but not yet
//! acknowledged come again; they are recognised by the highest `seq` printed
//! per `origin` in this run (the API delivers each origin's messages in `seq`
//! order) and acknowledged without being printed twice. Without any reachable
//! broker, or while brokers answer that they cannot serve it right now
//! (`no_quorum`, `unavailable`, `overloaded`), the program retries with a
//! growing pause and gives up after [`GIVE_UP`].
//!
//! With `--ack-wait DURATION` the subscription is shared (API.md §6.2):
//! several `subscriber` processes with one `--id` split the messages, each
//! leased to one of them until acknowledged or until DURATION passes; a
//! message a process printed but could not acknowledge in time may be
//! printed by another too (at least once).
//!
//! With `--key-file FILE` each payload is an envelope opened with the key in
//! FILE (`client::envelope`, API.md §5.4), and the plaintext is printed. A
//! payload that does not open ends the program with an error naming the
//! message: nothing of its batch is printed or acknowledged, so a run with
//! the right key gets all of it.
//!
//! With `--log FILE` each printed message is also appended to FILE as a
//! `received` record (`client::delivery`), for `bench check`; its digest is
//! of the payload as printed.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use client::cli::{describe, is_transient, BrokerArgs, Failover, SeenMessages};
use client::delivery::{self, DeliveryLog, Received, Record};
use client::envelope::Key;
use client::wire::pull_limits::DEFAULT_WAIT_MS;
use client::wire::{Message, PullQuery, Pulled, StartFrom, Subscribe};
use client::{Client, ClientError};

/// Most messages asked for in one poll.
const MAX_PULL: u64 = 100;
/// First pause after no broker could be reached; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long the program keeps trying without any reachable broker.
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// Print the messages of a rumor topic as they arrive, acknowledging each once printed.
#[derive(Debug, clap::Parser)]
#[command(name = "subscriber", version)]
pub struct Cli {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Subscriber id (registered when new)
    #[arg(long, value_name = "SUBSCRIBER")]
    pub id: String,
    /// Topic to subscribe to
    #[arg(long)]
    pub topic: String,
    /// Where a new subscription starts reading (an existing one keeps its position)
    #[arg(long, value_enum, default_value_t = StartFrom::Latest)]
    pub from: StartFrom,
    /// Exit after printing N messages
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// `text`: the payload alone on a line; `json`: the message as one JSON object per line
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Append a `received` record (JSON line) per printed message to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Decrypt each payload (AES-256-GCM) with the key in FILE: 64 hex
    /// characters; a payload that does not decrypt is an error
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Subscribe shared: each message is leased to one of the subscribers
    /// with this id for DURATION (e.g. 30s), and given out again unless
    /// acknowledged by then
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ack_wait: Option<Duration>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs the program; the error is the text of its one error line.
pub async fn run(cli: Cli) -> Result<()> {
    // The errors' text already names their cause.
    let key = cli.key_file.as_deref().map(Key::read).transpose();
    let key = key.map_err(|error| anyhow!("{error}"))?;
    let failover = cli.broker.failover().map_err(|error| anyhow!("{error}"))?;
    let log = cli.log.as_deref().map(open_log).transpose()?;
    Subscriber::new(&cli, failover, log, key).run().await
}

/// Opens the `--log` file for appending.
fn open_log(path: &Path) -> Result<DeliveryLog> {
    DeliveryLog::append_to(path).with_context(|| format!("cannot open log {}", path.display()))
}

/// The broker connection and what this run has printed.
struct Subscriber<'c> {
    cli: &'c Cli,
    failover: Failover,
    /// What this run printed.
    printed: SeenMessages,
    /// Messages still to print before exiting (`--count`).
    remaining: Option<u64>,
    /// `--log`.
    log: Option<DeliveryLog>,
    /// `--key-file`.
    key: Option<Key>,
}

impl<'c> Subscriber<'c> {
    fn new(cli: &'c Cli, failover: Failover, log: Option<DeliveryLog>, key: Option<Key>) -> Self {
        Subscriber {
            cli,
            failover,
            printed: SeenMessages::default(),
            remaining: cli.count,
            log,
            key,
        }
    }

    /// Sets up, then polls, prints and acknowledges until `--count`
    /// messages are printed.
    async fn run(&mut self) -> Result<()> {
        persist(self, async |s| s.setup().await).await?;
        while self.remaining != Some(0) {
            let pulled = persist(self, async |s| s.pull().await).await?;
            if self.print(&pulled.messages)? {
                persist(self, async |s| s.ack(&pulled.cursor).await).await?;
            }
        }
        Ok(())
    }

    /// One long poll, setting up first on any broker failed over to.
    async fn pull(&mut self) -> Result<Pulled, ClientError> {
        let query = PullQuery {
            topic: Some(self.cli.topic.clone()),
            max: Some(self.pull_size()),
            wait_ms: Some(DEFAULT_WAIT_MS),
            auto_ack: None,
        };
        let cli = self.cli;
        self.failover
            .call_prepared(
                async |client: &Client| prepare(client, cli).await,
                async |client: &Client| client.pull(&cli.id, &query).await,
            )
            .await
    }

    /// At most `MAX_PULL`, and never more than `--count` still allows.
    fn pull_size(&self) -> u32 {
        let size = self.remaining.map_or(MAX_PULL, |left| left.min(MAX_PULL));
        u32::try_from(size).unwrap_or(u32::MAX)
    }

    async fn ack(&mut self, cursor: &str) -> Result<(), ClientError> {
        let id = self.cli.id.as_str();
        let acked = self
            .failover
            .call(async |client: &Client| client.ack(id, cursor).await)
            .await;
        match acked {
            // A broker failed over to that does not hold every message the
            // cursor names yet refuses it (API.md §5.5): they come again
            // from it, are recognised as printed, and acknowledged then.
            Err(error) if error.code() == Some("bad_request") => Ok(()),
            other => other,
        }
    }

    /// Registers the subscriber and subscribes it on the first broker that answers.
    async fn setup(&mut self) -> Result<(), ClientError> {
        let cli = self.cli;
        self.failover
            .prepare(async |client: &Client| prepare(client, cli).await)
            .await
    }

    /// Prints the messages not printed before (up to `--count`) and flushes.
    /// True when every message was handled, so the batch may be acknowledged.
    /// Every payload is opened before any is printed, so a batch holding one
    /// that does not open is left whole for the next run.
    fn print(&mut self, messages: &[Message]) -> Result<bool> {
        let fresh: Vec<&Message> = messages.iter().filter(|m| !self.seen(m)).collect();
        let take = self.remaining.map_or(fresh.len(), |left| {
            fresh.len().min(usize::try_from(left).unwrap_or(usize::MAX))
        });
        let opened = fresh[..take]
            .iter()
            .map(|message| self.open(message))
            .collect::<Result<Vec<_>>>()?;
        let mut out = std::io::stdout().lock();
        for message in &opened {
            write_message(&mut out, message, self.cli.format).context("cannot write to stdout")?;
            self.log_received(message)?;
            self.printed.mark_seen(message);
            self.remaining = self.remaining.map(|left| left - 1);
        }
        out.flush().context("cannot write to stdout")?;
        // More than asked for: leave the rest unacknowledged.
        Ok(take == fresh.len())
    }

    /// `message` as printed: with `--key-file`, with its payload decrypted.
    fn open<'m>(&self, message: &'m Message) -> Result<Cow<'m, Message>> {
        let Some(key) = &self.key else {
            return Ok(Cow::Borrowed(message));
        };
        let payload = key
            .open(&message.topic, &message.payload)
            .with_context(|| format!("cannot decrypt message {}", message.id))?;
        Ok(Cow::Owned(Message {
            payload,
            ..message.clone()
        }))
    }

    /// Appends a `received` record for `message` to the `--log` file, if any.
    fn log_received(&mut self, message: &Message) -> Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let record = Record::Received(Received {
            subscriber: self.cli.id.clone(),
            id: message.id.clone(),
            origin: message.origin.clone(),
            seq: message.seq,
            digest: delivery::digest(message.payload.as_bytes()),
            published_at_ms: message.published_at_ms,
            received_ms: delivery::unix_ms(),
        });
        log.write(&record).context("cannot write to the log")
    }

    /// Whether this run already printed `message`.
    fn seen(&self, message: &Message) -> bool {
        // A shared subscription gives an origin's messages out of order
        // (another subscriber's lease ends): every one it gives is new.
        self.cli.ack_wait.is_none() && self.printed.has_seen(message)
    }
}

/// Runs `call` until it succeeds or fails for a reason that trying again
/// cannot mend (`is_transient`: no broker reached, or one that cannot take
/// it right now, e.g. `no_quorum` during an election), pausing between
/// attempts; gives up after `GIVE_UP`.
async fn persist<'c, T>(
    subscriber: &mut Subscriber<'c>,
    mut call: impl AsyncFnMut(&mut Subscriber<'c>) -> Result<T, ClientError>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        match call(subscriber).await {
            Err(error) if is_transient(&error) => {
                if started.elapsed() >= GIVE_UP {
                    bail!("{} (gave up after {GIVE_UP:?})", describe(&error));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            result => return result.map_err(|error| anyhow!(describe(&error))),
        }
    }
}

/// Registers `id` and subscribes it to `topic` (both idempotent).
async fn prepare(client: &Client, cli: &Cli) -> Result<(), ClientError> {
    client.register_subscriber(&cli.id).await?;
    let subscription = Subscribe {
        topic: cli.topic.clone(),
        from: cli.from,
        ack_wait_ms: cli
            .ack_wait
            .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        ..Subscribe::default()
    };
    client.subscribe_with(&cli.id, &subscription).await?;
    Ok(())
}

/// Writes one message as one line in `format`.
fn write_message(out: &mut impl Write, message: &Message, format: Format) -> std::io::Result<()> {
    match format {
        Format::Text => writeln!(out, "{}", message.payload),
        Format::Json => {
            serde_json::to_writer(&mut *out, message)?;
            writeln!(out)
        }
    }
}
