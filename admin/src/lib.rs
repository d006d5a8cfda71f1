//! `rumor`, the admin command-line program (API.md §7): looks at a cluster
//! (its members, topics and subscribers, a topic's live tail) and changes
//! it (the mode, the members), through any broker of `--host/--port` or
//! `--peers`, failing over between them. Tables for people, `--json` for
//! scripts; every failure is one line on stderr and exit status 1.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use client::cli::{BrokerArgs, Failover};
use client::wire::{ClusterInfo, Message, StartFrom, SubscriberInfo, TopicInfo, TopicLimits};
use client::Client;
use serde::Serialize;

/// Look at and change a rumor cluster.
#[derive(Debug, clap::Parser)]
#[command(name = "rumor", version, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Print JSON instead of tables (`tail`: one message per line)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Members (alive, replication lag), leader, term and mode
    Status,
    /// Every topic, or one, with its counts and limits
    Topics {
        /// Only this topic
        name: Option<String>,
    },
    /// Every subscriber with its subscriptions' backlogs
    Subscribers,
    /// Follow a topic's messages without taking them from anyone
    Tail {
        topic: String,
        /// Start with the messages the topic holds, or with the next one
        #[arg(long, value_enum, default_value_t = StartFrom::Latest)]
        from: StartFrom,
        /// Stop after N messages
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Switch the cluster's replication mode
    Mode {
        #[arg(value_parser = ["gossip", "leader"])]
        mode: String,
    },
    /// Add a broker to the cluster, or remove one
    #[command(subcommand)]
    Members(MemberChange),
    /// Print a new client token and its token_sha256 line for --auth-file
    Token,
}

#[derive(Debug, clap::Subcommand)]
pub enum MemberChange {
    /// Add the broker at HOST:PORT
    Add {
        #[arg(value_name = "HOST:PORT")]
        member: String,
    },
    /// Remove the broker with this id (HOST:PORT)
    Remove { id: String },
}

/// Runs the program; the error is the text of its one error line.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Token = cli.command {
        let (token, hash) = client::connect::new_token();
        write_out(&format!("token = {token}\ntoken_sha256 = \"{hash}\"\n"))?;
        return Ok(());
    }
    if cli.broker.host.is_none() && cli.broker.peers.is_none() {
        bail!("give --host and --port, or --peers (see --help)");
    }
    let mut brokers = cli.broker.failover().map_err(|error| anyhow!("{error}"))?;
    let json = cli.json;
    match cli.command {
        Command::Status => {
            let info = brokers.call(async |c: &Client| c.cluster().await).await?;
            print(json, &info, status_table)
        }
        Command::Topics { name: Some(name) } => {
            let topic = brokers
                .call(async |c: &Client| c.topic(&name).await)
                .await?;
            print(json, &topic, |topic| {
                topics_table(std::slice::from_ref(topic))
            })
        }
        Command::Topics { name: None } => {
            let topics = brokers.call(async |c: &Client| c.topics().await).await?;
            print(json, &topics, |topics| topics_table(topics))
        }
        Command::Subscribers => {
            let subscribers = brokers
                .call(async |c: &Client| c.subscribers().await)
                .await?;
            print(json, &subscribers, |subscribers| {
                subscribers_table(subscribers)
            })
        }
        Command::Tail { topic, from, count } => tail(&mut brokers, &topic, from, count, json).await,
        Command::Mode { mode } => {
            let set = brokers
                .call(async |c: &Client| c.set_mode(&mode).await)
                .await?;
            print(json, &set, |set| format!("mode: {}\n", set.mode))
        }
        Command::Members(MemberChange::Add { member }) => {
            let (host, port) = member
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
                .ok_or_else(|| anyhow!("{member:?} is not HOST:PORT"))?;
            brokers
                .call(async |c: &Client| c.add_member(&host, port).await)
                .await?;
            print(json, &Changed { member }, |changed| {
                format!("added {}\n", changed.member)
            })
        }
        Command::Members(MemberChange::Remove { id }) => {
            brokers
                .call(async |c: &Client| c.remove_member(&id).await)
                .await?;
            print(json, &Changed { member: id }, |changed| {
                format!("removed {}\n", changed.member)
            })
        }
        Command::Token => unreachable!("answered above"),
    }
}

/// A member added or removed, as `--json` prints it.
#[derive(Serialize)]
struct Changed {
    member: String,
}

/// Prints `value` as JSON, or as `table` renders it.
fn print<T: Serialize>(json: bool, value: &T, table: impl Fn(&T) -> String) -> Result<()> {
    let text = if json {
        let text = serde_json::to_string_pretty(value).context("cannot write JSON")?;
        format!("{text}\n")
    } else {
        table(value)
    };
    write_out(&text)?;
    Ok(())
}

/// Writes `text` to standard output; `false` once the reader went away (a
/// closed pipe, as with `| head`), which ends the program quietly.
fn write_out(text: &str) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to standard output"),
    }
}

/// Prints a topic's messages as they come (`--count` of them, or until the
/// topic is deleted or the broker stops), from the first broker that
/// answers.
async fn tail(
    brokers: &mut Failover,
    topic: &str,
    from: StartFrom,
    count: Option<u64>,
    json: bool,
) -> Result<()> {
    let mut stream = brokers
        .call(async |c: &Client| c.tail(topic, from).await)
        .await?;
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let Some(message) = stream.next().await? else {
            return Ok(());
        };
        if !write_out(&message_line(&message, json))? {
            return Ok(());
        }
        printed += 1;
    }
    Ok(())
}

/// A message as `tail` prints it: its JSON, or id, publisher and payload
/// (control characters shown escaped, so that none reaches the terminal).
fn message_line(message: &Message, json: bool) -> String {
    if json {
        format!("{}\n", String::from_utf8_lossy(&message.to_json()))
    } else {
        let payload: String = message.payload.escape_debug().collect();
        format!("{}  {}  {payload}\n", message.id, message.publisher)
    }
}

fn status_table(info: &ClusterInfo) -> String {
    let mut out = format!(
        "self: {}\nleader: {}\nterm: {}\nmode: {}\n\n",
        info.self_id,
        info.leader.as_deref().unwrap_or("none"),
        info.term,
        info.mode
    );
    let rows = info
        .members
        .iter()
        .map(|member| {
            let role = match (&info.leader, member.id == info.self_id) {
                (Some(leader), true) if *leader == member.id => "leader, self",
                (Some(leader), false) if *leader == member.id => "leader",
                (_, true) => "self",
                _ => "",
            };
            vec![
                member.id.clone(),
                if member.alive { "yes" } else { "no" }.to_string(),
                member.lag.map_or("-".to_string(), |lag| lag.to_string()),
                role.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["MEMBER", "ALIVE", "LAG", "ROLE"], rows));
    out
}

fn topics_table(topics: &[TopicInfo]) -> String {
    let rows = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.created_by.clone(),
                topic.messages.to_string(),
                topic.subscribers.to_string(),
                limits_text(&topic.limits),
            ]
        })
        .collect();
    table(
        &["TOPIC", "CREATED BY", "MESSAGES", "SUBSCRIBERS", "LIMITS"],
        rows,
    )
}

fn limits_text(limits: &TopicLimits) -> String {
    let parts: Vec<String> = [
        limits.max_messages.map(|n| format!("{n} messages")),
        limits.max_bytes.map(|n| format!("{n} bytes")),
        limits.max_age.as_ref().map(|age| format!("{age} old")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

fn subscribers_table(subscribers: &[SubscriberInfo]) -> String {
    let mut rows = Vec::new();
    for subscriber in subscribers {
        if subscriber.subscriptions.is_empty() {
            rows.push(vec![subscriber.id.clone(), "-".to_string()]);
        }
        for subscription in &subscriber.subscriptions {
            rows.push(vec![
                subscriber.id.clone(),
                subscription.topic.clone(),
                if subscription.shared { "shared" } else { "" }.to_string(),
                subscription.pending.to_string(),
                subscription.leased.to_string(),
                format!("{:.1}s", subscription.oldest_unacked_age_ms as f64 / 1000.0),
            ]);
        }
    }
    table(
        &["SUBSCRIBER", "TOPIC", "KIND", "PENDING", "LEASED", "OLDEST"],
        rows,
    )
}

/// Columns aligned to their widest cell, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["news".to_string(), "P1".to_string()],
            vec!["a".to_string(), "publisher-2".to_string()],
        ];
        assert_eq!(
            table(&["TOPIC", "BY"], rows),
            "TOPIC  BY\nnews   P1\na      publisher-2\n"
        );
    }

    #[test]
    fn limits_read_as_words() {
        let limits = TopicLimits {
            max_messages: Some(10),
            max_bytes: None,
            max_age: Some("1h".to_string()),
        };
        assert_eq!(limits_text(&limits), "10 messages, 1h old");
        assert_eq!(limits_text(&TopicLimits::default()), "-");
    }
}
