//! This broker's latest own events, kept after their commit so that
//! replication sends them to its peers without reading them back.
//!
//! A read transaction of another connection starts with a cold page cache
//! whenever the database changed since its last one, so reading back what
//! the writer has just written costs about a microsecond an event, once
//! per peer: under a steady load of batches the largest cost replication
//! added to the publishing broker. The writer hands each commit's own
//! events here already encoded for the wire, so every peer is sent the
//! same text (encoding once per peer cost the publishing broker as much
//! again as the sending); a sync takes a run of them when every one it
//! needs is here, and reads the store otherwise. A batch's requests
//! encode their events as they record them (`Recording`), into texts the
//! events share, and the events of a request that failed are cut off again.
//!
//! They are kept in a gapless run of seqs: a seq that does not follow on
//! (after an event that could not be encoded, or own events received back
//! from a peer) starts the run anew. Every kind of event is kept: when
//! only publishes were, the acknowledgements of the broker's own
//! subscribers broke the run, and syncs read from the store again. A
//! message deleted since its commit is still sent as it was (as a sync
//! read before the deletion would have sent it; every merge commutes).

use std::collections::VecDeque;

use client::peer::{EncodedEvent, EventEncoder};

/// Most events kept.
const MAX_EVENTS: usize = 20_000;
/// Most bytes of encoded events kept (payloads and headers may be large).
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of events that share one text, past which a recording starts
/// another: a text lives as long as any of its events, so the events kept
/// hold at most about this much (and one event) more than `MAX_BYTES`.
const TEXT_BYTES: usize = 1024 * 1024;

/// An event of this broker's own, encoded.
#[derive(Debug, Clone)]
pub struct Kept {
    pub seq: u64,
    pub encoded: EncodedEvent,
}

pub struct RecentEvents {
    /// This broker's id: every event kept is of this origin.
    origin: String,
    /// Consecutive seqs, oldest first.
    events: VecDeque<Kept>,
    bytes: usize,
}

impl RecentEvents {
    pub fn new(origin: &str) -> Self {
        RecentEvents {
            origin: origin.to_string(),
            events: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Adds a committed event of this broker's own (they come in seq
    /// order).
    pub fn push(&mut self, kept: Kept) {
        let follows = self
            .events
            .back()
            .is_none_or(|last| last.seq + 1 == kept.seq);
        if !follows {
            self.events.clear();
            self.bytes = 0;
        }
        self.bytes += kept.encoded.json().len();
        self.events.push_back(kept);
        while self.events.len() > MAX_EVENTS || self.bytes > MAX_BYTES {
            if let Some(oldest) = self.events.pop_front() {
                self.bytes -= oldest.encoded.json().len();
            }
        }
    }

    /// The events of `origin` with `after < seq <= until`, at most
    /// `limit`, when all of them are here.
    pub fn between(&self, origin: &str, after: u64, until: u64, limit: usize) -> Option<Vec<Kept>> {
        let (first, last) = (self.events.front()?.seq, self.events.back()?.seq);
        if self.origin != origin || after >= until || first > after + 1 || last < until {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(
            self.events
                .iter()
                .skip(skip)
                .take_while(|kept| kept.seq <= until)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

/// The own events a batch of requests records, encoded as they are
/// recorded into shared texts (see `EventEncoder`) of about `TEXT_BYTES`.
#[derive(Default)]
pub struct Recording {
    sealed: Vec<Kept>,
    encoder: EventEncoder,
    /// The seq of each event in `encoder`.
    seqs: Vec<u64>,
}

impl Recording {
    /// Keeps the event of seq `seq` that `encode` encodes. One that cannot
    /// be encoded is not kept: the run of kept seqs breaks there, and syncs
    /// read it from the store.
    pub fn keep(
        &mut self,
        seq: u64,
        encode: impl FnOnce(&mut EventEncoder) -> Result<(), serde_json::Error>,
    ) {
        match encode(&mut self.encoder) {
            Ok(()) => self.seqs.push(seq),
            Err(error) => tracing::error!("cannot encode event {seq}: {error}"),
        }
        if self.encoder.bytes() >= TEXT_BYTES {
            self.seal();
        }
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.seqs.is_empty()
    }

    /// How many events it holds: where the next request's start.
    pub fn mark(&self) -> usize {
        self.sealed.len() + self.seqs.len()
    }

    /// Forgets the events of a request that failed, recorded since `mark`.
    pub fn undo(&mut self, mark: usize) {
        match mark.checked_sub(self.sealed.len()) {
            Some(open) => {
                self.seqs.truncate(open);
                self.encoder.truncate(open);
            }
            None => {
                self.sealed.truncate(mark);
                self.seqs.clear();
                self.encoder = EventEncoder::default();
            }
        }
    }

    fn seal(&mut self) {
        let encoded = std::mem::take(&mut self.encoder).finish();
        let seqs = std::mem::take(&mut self.seqs);
        self.sealed.extend(
            seqs.into_iter()
                .zip(encoded)
                .map(|(seq, encoded)| Kept { seq, encoded }),
        );
    }

    /// Every event kept, in the order recorded.
    pub fn finish(mut self) -> Vec<Kept> {
        self.seal();
        self.sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Event};
    use client::wire::Headers;

    fn publish(seq: u64, payload: &str) -> Event {
        Event {
            origin: "A:1".into(),
            seq,
            lamport: seq,
            change: Change::Publish {
                topic: "news".into(),
                publisher: "P1".into(),
                payload: payload.into(),
                published_at_ms: 1,
                headers: Headers::new(),
                msg_id: None,
            },
        }
    }

    fn kept(event: &Event) -> Kept {
        Kept {
            seq: event.seq,
            encoded: EncodedEvent::new(event).unwrap(),
        }
    }

    fn seqs(events: Option<Vec<Kept>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|kept| kept.seq).collect())
    }

    #[test]
    fn gives_a_run_only_when_every_event_of_it_is_here() {
        let mut recent = RecentEvents::new("A:1");
        for seq in 3..=7 {
            recent.push(kept(&publish(seq, "x")));
        }
        // origin, after, until, limit, the seqs expected, why
        type Case = (
            &'static str,
            u64,
            u64,
            usize,
            Option<Vec<u64>>,
            &'static str,
        );
        let cases: [Case; 7] = [
            ("A:1", 2, 7, 100, Some(vec![3, 4, 5, 6, 7]), "all of them"),
            ("A:1", 4, 6, 100, Some(vec![5, 6]), "a run within"),
            ("A:1", 4, 7, 2, Some(vec![5, 6]), "up to the limit"),
            ("A:1", 1, 7, 100, None, "seq 2 is not here"),
            ("A:1", 2, 8, 100, None, "seq 8 is not here"),
            ("A:1", 7, 7, 100, None, "nothing to give"),
            ("B:2", 2, 7, 100, None, "another origin"),
        ];
        for (origin, after, until, limit, expected, why) in cases {
            let found = seqs(recent.between(origin, after, until, limit));
            assert_eq!(found, expected, "{why}");
        }
    }

    #[test]
    fn a_seq_that_does_not_follow_on_starts_the_run_anew() {
        let mut recent = RecentEvents::new("A:1");
        recent.push(kept(&publish(1, "x")));
        recent.push(kept(&publish(2, "x")));
        // Seq 3 could not be encoded, so it was not kept.
        recent.push(kept(&publish(4, "x")));
        assert_eq!(seqs(recent.between("A:1", 1, 4, 100)), None);
        assert_eq!(seqs(recent.between("A:1", 3, 4, 100)), Some(vec![4]));
        recent.push(kept(&publish(9, "x")));
        assert_eq!(seqs(recent.between("A:1", 3, 9, 100)), None);
        assert_eq!(seqs(recent.between("A:1", 8, 9, 100)), Some(vec![9]));
    }

    #[test]
    fn keeps_the_newest_within_its_bounds() {
        let mut recent = RecentEvents::new("A:1");
        for seq in 1..=(MAX_EVENTS as u64 + 10) {
            recent.push(kept(&publish(seq, "x")));
        }
        assert_eq!(recent.events.len(), MAX_EVENTS);
        assert_eq!(recent.events.front().map(|kept| kept.seq), Some(11));
        // Headers count as much as payloads.
        let headed = |seq| {
            let mut event = publish(seq, "x");
            if let Change::Publish { headers, .. } = &mut event.change {
                headers.insert("big".into(), "y".repeat(MAX_BYTES / 2 + 1));
            }
            kept(&event)
        };
        let last = headed(MAX_EVENTS as u64 + 12);
        recent.push(headed(MAX_EVENTS as u64 + 11));
        recent.push(last.clone());
        assert_eq!(recent.events.len(), 1, "two halves do not fit");
        assert_eq!(recent.bytes, last.encoded.json().len());
    }

    #[test]
    fn a_recording_keeps_what_the_requests_that_succeeded_recorded() {
        let mut recording = Recording::default();
        let large = "x".repeat(TEXT_BYTES);
        let keep = |recording: &mut Recording, seq, payload: &str| {
            let event = publish(seq, payload);
            recording.keep(seq, |encoder| encoder.push(&event));
        };
        keep(&mut recording, 1, "a");
        // A request that failed after its text grew past the bound (and
        // was closed), then one that failed within a text.
        for payload in [large.as_str(), "lost"] {
            let mark = recording.mark();
            keep(&mut recording, 2, payload);
            keep(&mut recording, 3, "lost");
            recording.undo(mark);
            assert_eq!(recording.mark(), 1);
        }
        keep(&mut recording, 2, &large);
        keep(&mut recording, 3, "c");
        let kept = recording.finish();
        let read: Vec<(u64, Event)> = kept
            .iter()
            .map(|kept| {
                (
                    kept.seq,
                    serde_json::from_slice(kept.encoded.json()).unwrap(),
                )
            })
            .collect();
        let expected = [
            (1, publish(1, "a")),
            (2, publish(2, &large)),
            (3, publish(3, "c")),
        ];
        assert_eq!(read, expected);
    }
}
