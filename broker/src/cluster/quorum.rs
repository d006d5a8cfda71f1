//! Majority arithmetic over what the brokers hold, a pure module: the
//! commit vector, who holds a write, the floor every peer holds, and
//! whether a broker holds everything others reported. `reports` are the
//! `have` vectors peers told this broker (only those that count: of the
//! right term, of current members); `members` counts this broker too.

use client::peer::Have;

/// Whether `count` of `members` brokers are a majority.
pub fn is_majority(count: usize, members: usize) -> bool {
    2 * count > members
}

/// Per origin of `mine`, the greatest seq up to which a majority of the
/// `members` (this broker, holding `mine`, and the peers of `reports`)
/// holds every event. A peer's seq counts only up to ours: a majority must
/// include this broker's view to be one it can deliver.
pub fn commit_vector(mine: &Have, reports: &[&Have], members: usize) -> Have {
    let majority = members / 2 + 1;
    mine.iter()
        .map(|(origin, &own)| {
            let mut seqs: Vec<u64> = reports
                .iter()
                .map(|have| held(have, origin).min(own))
                .chain(std::iter::once(own))
                .collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            let floor = seqs.get(majority - 1).copied().unwrap_or(0);
            (origin.clone(), floor)
        })
        .collect()
}

/// How many of the reporting peers hold `origin`'s events up to `seq`.
pub fn holders(reports: &[&Have], origin: &str, seq: u64) -> usize {
    reports
        .iter()
        .filter(|have| held(have, origin) >= seq)
        .count()
}

/// Whether `mine` holds everything each report holds (an origin missing
/// from `mine` is held up to 0).
pub fn holds_all(mine: &Have, reports: &[&Have]) -> bool {
    reports.iter().all(|theirs| {
        theirs
            .iter()
            .all(|(origin, &seq)| held(mine, origin) >= seq)
    })
}

/// Per origin, the seq up to which every peer holds every event: `None`
/// with no peer, nothing while one has not reported (`reports` holds
/// `None` for it).
pub fn floor(reports: &[Option<&Have>]) -> Option<Have> {
    let (first, rest) = reports.split_first()?;
    let Some(first) = first else {
        return Some(Have::new());
    };
    let floor = first
        .iter()
        .map(|(origin, &seq)| {
            let lowest = rest
                .iter()
                .map(|have| have.map_or(0, |have| held(have, origin)))
                .fold(seq, u64::min);
            (origin.clone(), lowest)
        })
        .collect();
    Some(floor)
}

fn held(have: &Have, origin: &str) -> u64 {
    have.get(origin).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::have;

    #[test]
    fn a_majority_is_more_than_half() {
        assert!(!is_majority(1, 2));
        assert!(is_majority(2, 3));
        assert!(!is_majority(2, 4));
        assert!(is_majority(3, 5));
    }

    #[test]
    fn the_commit_vector_is_what_a_majority_holds_up_to_ours() {
        let mine = have(&[("A", 10), ("B", 3)]);
        assert_eq!(commit_vector(&mine, &[], 5), have(&[("A", 0), ("B", 0)]));
        let p2 = have(&[("A", 8), ("B", 3)]);
        let p3 = have(&[("A", 6)]);
        assert_eq!(
            commit_vector(&mine, &[&p2, &p3], 5),
            have(&[("A", 6), ("B", 0)])
        );
        let p4 = have(&[("A", 12), ("B", 9)]);
        assert_eq!(
            commit_vector(&mine, &[&p2, &p3, &p4], 5),
            have(&[("A", 8), ("B", 3)]),
            "a peer's seq past ours counts as ours"
        );
    }

    #[test]
    fn holders_count_the_peers_that_hold_a_seq() {
        let p2 = have(&[("A", 8)]);
        let p3 = have(&[("A", 6), ("B", 1)]);
        assert_eq!(holders(&[&p2, &p3], "A", 7), 1);
        assert_eq!(holders(&[&p2, &p3], "A", 6), 2);
        assert_eq!(holders(&[&p2, &p3], "C", 1), 0);
    }

    #[test]
    fn holding_all_counts_a_missing_origin_as_zero() {
        let mine = have(&[("A", 4)]);
        assert!(holds_all(&mine, &[&have(&[("A", 4), ("B", 0)])]));
        assert!(!holds_all(&mine, &[&have(&[("A", 5)])]));
        assert!(holds_all(&mine, &[]));
    }

    #[test]
    fn the_floor_is_what_every_peer_holds() {
        assert_eq!(floor(&[]), None, "alone");
        assert_eq!(floor(&[None, None]), Some(Have::new()));
        let p2 = have(&[("A", 9), ("B", 4)]);
        let p3 = have(&[("A", 7), ("C", 2)]);
        assert_eq!(
            floor(&[Some(&p2), None]),
            Some(have(&[("A", 0), ("B", 0)])),
            "one peer not heard from"
        );
        assert_eq!(
            floor(&[Some(&p2), Some(&p3)]),
            Some(have(&[("A", 7), ("B", 0)]))
        );
    }
}
