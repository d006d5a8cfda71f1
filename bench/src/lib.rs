//! The `bench` program: benchmark tools for rumor. For now one subcommand,
//! `bench check`, the delivery checker (see [`check`]).
//!
//! Exit codes: 0 when every check passes, 1 when a check fails (one line on
//! stderr says what), 2 on bad arguments or unreadable or malformed input.

pub mod check;

use std::path::PathBuf;

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

/// Why the program failed; the text is its one error line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that cannot be read or parsed.
    #[error(transparent)]
    Input(#[from] check::InputError),
    /// A check that did not pass.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

/// Runs the program, printing its report on stdout.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Check(args) => run_check(&args),
    }
}

fn run_check(args: &CheckArgs) -> Result<(), Error> {
    let logs = check::read_logs(&args.files)?;
    let report = check::analyse(&logs);
    if args.json {
        let json = serde_json::to_string(&report).expect("plain strings and numbers serialize");
        println!("{json}");
    } else {
        print!("{}", check::table(&report));
    }
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
