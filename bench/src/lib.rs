//! The `bench` program: benchmark tools for rumor. `bench check` is the
//! delivery checker (see [`check`]), `bench publish` measures publish
//! throughput (see [`publish`]) and `bench latency` publish-to-delivery
//! latency (see [`latency`]).
//!
//! Exit codes: 0 when every check passes, 1 when a check fails or a broker
//! call fails (one line on stderr says what), 2 on bad arguments or
//! unreadable or malformed input.

pub mod check;
pub mod latency;
pub mod publish;
pub mod report;

use std::path::PathBuf;

use client::delivery::unix_ms;
use client::{Client, ClientError, PeerAddr};

/// Benchmark tools for rumor.
#[derive(Debug, clap::Parser)]
#[command(name = "bench", version, arg_required_else_help = false)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check delivery logs (`publisher --log`, `subscriber --log`): per
    /// subscriber, what was lost, duplicated, out of order or changed, and
    /// the latency from send to receipt
    Check(CheckArgs),
    /// Publish messages from concurrent connections to a fresh topic and
    /// report throughput and per-request latency
    Publish(publish::PublishArgs),
    /// Publish at a fixed rate while one subscriber long-polls, and report
    /// the latency from publish to delivery
    Latency(latency::LatencyArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    /// Sent and received log files, in any order
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `--host <HOST> --port <PORT>`: the broker to benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Broker host
    #[arg(long)]
    pub host: String,
    /// Broker port
    #[arg(long)]
    pub port: u16,
}

impl BrokerArgs {
    /// A new client (its own keep-alive connections) for the broker.
    pub fn client(&self) -> Client {
        let broker = PeerAddr {
            host: self.host.clone(),
            port: self.port,
        };
        Client::new(broker.base_url())
    }
}

/// Why the program failed; the text is its one error line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that cannot be read or parsed.
    #[error(transparent)]
    Input(#[from] check::InputError),
    /// A check that did not pass.
    #[error("{0}")]
    Failed(String),
    /// A broker call that failed during a benchmark.
    #[error(transparent)]
    Broker(#[from] ClientError),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Failed(_) | Error::Broker(_) => 1,
        }
    }
}

/// Runs the program, printing its report on stdout.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Publish(args) => {
            let report = publish::run(&args).await?;
            print_report(args.json, &report, publish::table);
            Ok(())
        }
        Command::Latency(args) => {
            let report = latency::run(&args).await?;
            print_report(args.json, &report, latency::table);
            Ok(())
        }
    }
}

fn run_check(args: &CheckArgs) -> Result<(), Error> {
    let logs = check::read_logs(&args.files)?;
    let report = check::analyse(&logs);
    print_report(args.json, &report, check::table);
    let problems = check::problems(&report);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "delivery check failed: {}",
            problems.join("; ")
        )))
    }
}

/// Prints `report` on stdout as one JSON object or as `table` makes it.
fn print_report<R: serde::Serialize>(json: bool, report: &R, table: fn(&R) -> String) {
    if json {
        let json = serde_json::to_string(report).expect("plain strings and numbers serialize");
        println!("{json}");
    } else {
        print!("{}", table(report));
    }
}

/// A name no earlier run used, for the benchmark's publisher, topic and
/// subscriber: `bench-<pid>-<unix ms>`.
pub fn unique_name() -> String {
    format!("bench-{}-{}", std::process::id(), unix_ms())
}
