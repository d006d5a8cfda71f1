//! Helpers shared by the unit tests of several modules.

use client::peer::Have;

/// A `have` vector from `(origin, seq)` pairs.
pub fn have(entries: &[(&str, u64)]) -> Have {
    entries
        .iter()
        .map(|(origin, seq)| (origin.to_string(), *seq))
        .collect()
}
