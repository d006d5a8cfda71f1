//! Many connections at once, for the subcommands that give every client a
//! connection of its own (`fanout`, `sweep`, `publish`): the open-file
//! limit they need, raised as far as the hard limit allows, and set-up
//! calls run a bounded number at a time, so that thousands of clients do
//! not all connect in the same instant and overflow the broker's accept
//! queue.

use std::future::Future;

use client::{Client, ClientError};
use tokio::task::JoinSet;

use crate::Error;

/// Most set-up calls in flight at once.
pub const SETUP_CONCURRENCY: usize = 64;
/// Open files the process needs besides its connections (stdio, the
/// runtime's epoll and wake-up descriptors, the set-up client).
const SPARE_FILES: u64 = 64;

/// Makes room for `connections` connections under the open-file limit
/// (`ulimit -n`), raising its soft limit up to the hard limit if need be,
/// so that connections do not fail midway; fails with advice when even the
/// hard limit is too low. Passes when the limit cannot be read.
pub fn ensure_open_files(connections: u64) -> Result<(), Error> {
    let Some(limit) = open_files_limit() else {
        return Ok(());
    };
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let needed = connections.saturating_add(SPARE_FILES) as libc::rlim_t;
    let too_few = format!(
        "{connections} connections need about {needed} open files but `ulimit -n` is {soft}"
    );
    match raise_to(needed, soft, hard) {
        Ok(None) => Ok(()),
        Ok(Some(raised)) => set_open_files_limit(libc::rlimit {
            rlim_cur: raised,
            rlim_max: hard,
        })
        .map_err(|error| {
            Error::Failed(format!(
                "{too_few} and raising it failed ({error}); raise it first, e.g. `ulimit -n {hard}`"
            ))
        }),
        Err(advice) => Err(Error::Failed(format!("{too_few}; {advice}"))),
    }
}

/// What the soft limit of open files `soft` must become for `needed` open
/// files: `None` when it is high enough already, the new soft limit when
/// the hard limit `hard` allows it, else what to do about it. (Unlimited,
/// `RLIM_INFINITY`, is the greatest `rlim_t`.)
fn raise_to(
    needed: libc::rlim_t,
    soft: libc::rlim_t,
    hard: libc::rlim_t,
) -> Result<Option<libc::rlim_t>, String> {
    if needed <= soft {
        Ok(None)
    } else if needed <= hard {
        Ok(Some(needed))
    } else {
        Err(format!(
            "the hard limit is {hard}: use fewer connections or raise the hard limit"
        ))
    }
}

/// The soft and hard limits of open files; `None` when they cannot be read.
fn open_files_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the limits into `limit`, a valid,
    // exclusively borrowed rlimit.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0).then_some(limit)
}

/// Sets the soft and hard limits of open files to `limit`.
fn set_open_files_limit(limit: libc::rlimit) -> std::io::Result<()> {
    // SAFETY: setrlimit only reads `limit`, a valid rlimit that outlives
    // the call.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Runs every job, at most [`SETUP_CONCURRENCY`] at a time; returns their
/// results in the order they finished, or the first error.
pub async fn bounded<T, E, F>(jobs: impl IntoIterator<Item = F>) -> Result<Vec<T>, E>
where
    T: Send + 'static,
    E: Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed_and_allowed() {
        assert_eq!(raise_to(964, 1024, 1024), Ok(None));
        assert_eq!(raise_to(1064, 1000, 4096), Ok(Some(1064)));
        assert_eq!(raise_to(4096, 1024, libc::RLIM_INFINITY), Ok(Some(4096)));
        let too_many = raise_to(10_064, 1024, 4096).expect_err("over the hard limit");
        assert!(too_many.contains("the hard limit is 4096"), "{too_many}");
    }

    #[test]
    fn the_open_file_limit_is_raised_within_the_hard_limit() {
        let before = open_files_limit().expect("this process's limits");
        let (soft, hard) = (before.rlim_cur, before.rlim_max);
        let connections = soft.min(hard.saturating_sub(SPARE_FILES));
        ensure_open_files(connections).expect("within the hard limit");
        let after = open_files_limit().expect("this process's limits");
        let needed = connections.saturating_add(SPARE_FILES);
        assert!(after.rlim_cur >= needed, "{} < {needed}", after.rlim_cur);
        assert_eq!(after.rlim_max, hard);
        let refused = ensure_open_files(hard).expect_err("past the hard limit");
        assert!(refused.to_string().contains("hard limit"), "{refused}");
    }
}
