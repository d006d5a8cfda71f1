//! Many connections at once, for the subcommands that give every client a
//! connection of its own (`fanout`, `sweep`): the open-file limit they
//! need, and set-up calls run a bounded number at a time, so that
//! thousands of clients do not all connect in the same instant and
//! overflow the broker's accept queue.

use std::future::Future;

use client::{Client, ClientError};
use tokio::task::JoinSet;

use crate::{BrokerArgs, Error};

/// Most set-up calls in flight at once.
pub const SETUP_CONCURRENCY: usize = 64;
/// Open files the process needs besides its connections (stdio, the
/// runtime's epoll and wake-up descriptors, the set-up client).
const SPARE_FILES: u64 = 64;

/// Fails with advice when the open-file limit (`ulimit -n`) is too low for
/// `connections` connections, rather than letting connections fail midway.
/// Passes when the limit cannot be read.
pub fn ensure_open_files(connections: u64) -> Result<(), Error> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match open_files_limit(&limits) {
        Some((soft, hard)) => fits(connections, soft, hard).map_err(Error::Failed),
        None => Ok(()),
    }
}

/// Whether `connections` connections fit the soft limit of open files
/// `soft`; if not, what to do about it.
fn fits(connections: u64, soft: u64, hard: u64) -> Result<(), String> {
    let needed = connections.saturating_add(SPARE_FILES);
    if needed <= soft {
        return Ok(());
    }
    let advice = if needed <= hard {
        format!("raise it first, e.g. `ulimit -n {hard}`")
    } else {
        format!("the hard limit is {hard}: use fewer connections or raise the hard limit")
    };
    Err(format!(
        "{connections} connections need about {needed} open files but `ulimit -n` is {soft}; {advice}"
    ))
}

/// The soft and hard "Max open files" limits in the text of
/// `/proc/<pid>/limits` (`unlimited` as `u64::MAX`).
fn open_files_limit(limits: &str) -> Option<(u64, u64)> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    let mut values = line.split_whitespace().map(|value| match value {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    });
    Some((values.next()??, values.next()??))
}

/// Runs every job, at most [`SETUP_CONCURRENCY`] at a time; returns their
/// results in the order they finished, or the first error.
pub async fn bounded<T, F>(jobs: impl IntoIterator<Item = F>) -> Result<Vec<T>, ClientError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    for job in jobs {
        if running.len() >= SETUP_CONCURRENCY {
            if let Some(joined) = running.join_next().await {
                done.push(joined.expect("a set-up task does not panic")?);
            }
        }
        running.spawn(job);
    }
    while let Some(joined) = running.join_next().await {
        done.push(joined.expect("a set-up task does not panic")?);
    }
    Ok(done)
}

/// Opens (or refreshes) each client's keep-alive connection with a
/// `GET /health`, a bounded number at a time, so that the calls that follow
/// all at once find their connections open.
pub async fn warm(clients: impl IntoIterator<Item = Client>) -> Result<(), ClientError> {
    let calls = clients.into_iter().map(|client| async move {
        client.health().await?;
        Ok(())
    });
    bounded(calls).await.map(drop)
}

/// `n` new clients of `broker`, each with its connection open.
pub async fn connected_clients(broker: &BrokerArgs, n: u64) -> Result<Vec<Client>, ClientError> {
    let clients: Vec<Client> = (0..n).map(|_| broker.client()).collect();
    warm(clients.iter().cloned()).await?;
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_reads_the_soft_and_hard_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(limits), Some((1024, 524_288)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(open_files_limit("Max processes 10 10 processes\n"), None);
    }

    #[test]
    fn connections_must_fit_the_soft_limit_with_room_to_spare() {
        assert_eq!(fits(900, 1024, 1024), Ok(()));
        let raise = fits(1000, 1000, 4096).expect_err("no room to spare");
        assert!(raise.contains("`ulimit -n 4096`"), "{raise}");
        let too_many = fits(10_000, 1024, 4096).expect_err("over the hard limit");
        assert!(too_many.contains("the hard limit is 4096"), "{too_many}");
    }
}
