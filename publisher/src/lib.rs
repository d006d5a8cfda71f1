//! The `publisher` program (API.md §1): registers a publisher, creates the
//! topic when asked, publishes the MESSAGE arguments, the lines of stdin or
//! `--count` generated messages, and prints the id of each acknowledged
//! message on its own line as soon as the broker acknowledges it.
//!
//! Messages go out in batches (`publish_messages`, one transaction each, in
//! order); a batch from stdin holds only lines that were already read, so a
//! line typed interactively is published at once. Every message carries a
//! `msg_id` of its own (`<run>-<n>`, API.md §6.1): a batch that got no
//! answer, or an answer that no broker can take it now (`no_quorum`,
//! `unavailable`, `overloaded`), is sent again, to the next broker after a
//! failover, with the same ids, so the brokers store it once (within their
//! `--dedup-window`).
//!
//! With `--key-file FILE` each payload is published sealed in an envelope
//! with the key in FILE (`client::envelope`, API.md §5.4).
//!
//! With `--log FILE` each acknowledged message is also appended to FILE as a
//! `sent` record (`client::delivery`), for `bench check`; its digest is of
//! the plaintext, as the subscriber's is.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use client::cli::{describe, is_transient, run_id, BrokerArgs, Failover};
use client::delivery::{self, DeliveryLog, Record, Sent};
use client::envelope::Key;
use client::wire::{NewMessage, Published};
use client::{Client, ClientError};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// Most messages sent in one request.
const BATCH_MESSAGES: usize = 100;
/// Most payload bytes sent in one request (a bigger message goes alone).
const BATCH_BYTES: usize = 256 * 1024;
/// First pause before a publish is tried again; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long a batch is tried again while no broker takes it.
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// Publish messages to a rumor topic, printing the id of each acknowledged message.
#[derive(Debug, clap::Parser)]
#[command(name = "publisher", version)]
pub struct Cli {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Publisher id (registered when new)
    #[arg(long, value_name = "PUBLISHER")]
    pub id: String,
    /// Topic to publish to
    #[arg(long)]
    pub topic: String,
    /// Create the topic first (an existing topic is fine)
    #[arg(long)]
    pub create: bool,
    /// Publish N generated messages, `message-1` .. `message-N`
    #[arg(long, value_name = "N", conflicts_with = "messages")]
    pub count: Option<u64>,
    /// Append a `sent` record (JSON line) per acknowledged message to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Encrypt each payload (AES-256-GCM) with the key in FILE: 64 hex characters
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Messages to publish, in order [default: each line of stdin]
    #[arg(value_name = "MESSAGE")]
    pub messages: Vec<String>,
}

/// Runs the program; the error is the text of its one error line.
pub async fn run(cli: Cli) -> Result<()> {
    // The errors' text already names their cause.
    let key = cli.key_file.as_deref().map(Key::read).transpose();
    let key = key.map_err(|error| anyhow!("{error}"))?;
    let failover = cli.broker.failover().map_err(|error| anyhow!("{error}"))?;
    let log = cli.log.as_deref().map(open_log).transpose()?;
    let mut session = Session::new(&cli, failover, log, key);
    session.setup().await.map_err(failed)?;
    match cli.count {
        Some(count) => {
            let generated = (1..=count).map(|n| format!("message-{n}"));
            session.publish_all(generated).await
        }
        None if cli.messages.is_empty() => publish_stdin(&mut session).await,
        None => session.publish_all(cli.messages.iter().cloned()).await,
    }
}

/// Publishes each line of stdin, without its line ending.
async fn publish_stdin(session: &mut Session<'_>) -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    while let Some(line) = next_line(&mut stdin).await? {
        session.queue(line).await?;
        if !stdin.buffer().contains(&b'\n') {
            // No further line has arrived yet: send what is queued now.
            session.flush().await?;
        }
    }
    session.flush().await
}

/// The next line without its `\n` or `\r\n`, or `None` at end of input.
async fn next_line(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<Option<String>> {
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .await
        .context("cannot read stdin")?
        == 0
    {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

/// The broker connection, the publisher's identity and the batch being built.
struct Session<'c> {
    cli: &'c Cli,
    failover: Failover,
    /// Messages as published (envelopes with `--key-file`), each with a
    /// `msg_id` of this run, so that a batch tried again after a failover
    /// is stored once.
    batch: Vec<NewMessage>,
    /// The `msg_id`s are `<run>-<n>`.
    run: String,
    sent: u64,
    batch_bytes: usize,
    /// `--log`.
    log: Option<DeliveryLog>,
    /// With `--log`, the digest of each plaintext in `batch`.
    digests: Vec<String>,
    /// `--key-file`.
    key: Option<Key>,
}

impl<'c> Session<'c> {
    fn new(cli: &'c Cli, failover: Failover, log: Option<DeliveryLog>, key: Option<Key>) -> Self {
        Session {
            cli,
            failover,
            batch: Vec::new(),
            run: run_id(),
            sent: 0,
            batch_bytes: 0,
            log,
            digests: Vec::new(),
            key,
        }
    }

    /// Publishes every payload in order.
    async fn publish_all(&mut self, payloads: impl Iterator<Item = String>) -> Result<()> {
        for payload in payloads {
            self.queue(payload).await?;
        }
        self.flush().await
    }

    /// Adds a payload to the batch, first sending the batch when it is full.
    async fn queue(&mut self, payload: String) -> Result<()> {
        // `bench check` compares plaintexts, so the digest is taken before sealing.
        let digest = self
            .log
            .is_some()
            .then(|| delivery::digest(payload.as_bytes()));
        let payload = self.seal(payload)?;
        let full =
            self.batch.len() >= BATCH_MESSAGES || self.batch_bytes + payload.len() > BATCH_BYTES;
        if full && !self.batch.is_empty() {
            self.flush().await?;
        }
        self.batch_bytes += payload.len();
        self.sent += 1;
        self.batch.push(NewMessage {
            payload,
            headers: None,
            msg_id: Some(format!("{}-{}", self.run, self.sent)),
        });
        self.digests.extend(digest);
        Ok(())
    }

    /// `payload` as published: with `--key-file`, its envelope.
    fn seal(&self, payload: String) -> Result<String> {
        match &self.key {
            Some(key) => Ok(key.seal(&self.cli.topic, &payload)?),
            None => Ok(payload),
        }
    }

    /// Sends the batch, if any, prints the ids of its messages and logs them.
    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let messages = std::mem::take(&mut self.batch);
        let digests = std::mem::take(&mut self.digests);
        self.batch_bytes = 0;
        let sent_ms = delivery::unix_ms();
        let published = self.publish(&messages).await?;
        let acked_ms = delivery::unix_ms();
        print_ids(&published).context("cannot write to stdout")?;
        if let Some(log) = &mut self.log {
            for (message, digest) in published.iter().zip(digests) {
                let record = Record::Sent(Sent {
                    id: message.id.clone(),
                    digest,
                    sent_ms,
                    acked_ms,
                });
                log.write(&record).context("cannot write to the log")?;
            }
        }
        Ok(())
    }

    /// Publishes one batch, setting up first on any broker failed over
    /// to, and tries again (the same `msg_id`s) while no broker takes it,
    /// up to `GIVE_UP`.
    async fn publish(&mut self, messages: &[NewMessage]) -> Result<Vec<Published>> {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            match self.publish_once(messages).await {
                Err(error) if is_transient(&error) => {
                    if started.elapsed() >= GIVE_UP {
                        return Err(anyhow!("{} (gave up after {GIVE_UP:?})", describe(&error)));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                result => return result.map_err(failed),
            }
        }
    }

    async fn publish_once(
        &mut self,
        messages: &[NewMessage],
    ) -> Result<Vec<Published>, ClientError> {
        let cli = self.cli;
        let (topic, id) = (cli.topic.as_str(), cli.id.as_str());
        let batch = self
            .failover
            .call_prepared(
                async |client: &Client| prepare(client, id, topic, cli.create).await,
                async |client: &Client| client.publish_messages(topic, id, messages.to_vec()).await,
            )
            .await?;
        Ok(batch.messages)
    }

    /// Registers the publisher, and creates the topic when asked, on the
    /// first broker that answers.
    async fn setup(&mut self) -> Result<(), ClientError> {
        let cli = self.cli;
        self.failover
            .prepare(async |client: &Client| prepare(client, &cli.id, &cli.topic, cli.create).await)
            .await
    }
}

/// Registers `id` and, when `create`, creates `topic` (an existing one is fine).
async fn prepare(client: &Client, id: &str, topic: &str, create: bool) -> Result<(), ClientError> {
    client.register_publisher(id).await?;
    if create {
        match client.create_topic(topic, id).await {
            Ok(_) => {}
            Err(error) if error.code() == Some("topic_exists") => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Opens the `--log` file for appending.
fn open_log(path: &Path) -> Result<DeliveryLog> {
    DeliveryLog::append_to(path).with_context(|| format!("cannot open log {}", path.display()))
}

/// Prints one id per line and flushes, so a reader sees each acknowledgement at once.
fn print_ids(published: &[Published]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for message in published {
        writeln!(out, "{}", message.id)?;
    }
    out.flush()
}

/// A failed broker call as the program's error.
fn failed(error: ClientError) -> anyhow::Error {
    anyhow!(describe(&error))
}
