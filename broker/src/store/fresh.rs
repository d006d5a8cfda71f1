//! What the latest commits added, kept in memory so that a woken long poll
//! can take its new messages from here instead of reading them back from
//! SQLite (a woken pull's read, on a read thread, took about 0.1 ms of
//! the 0.75 ms from a publish to its delivery).
//!
//! After every commit the writer keeps a [`Note`] of it with this
//! broker's own seq after it. A read that finds, in its snapshot, that the
//! broker holds its own events up to seq `s` read the state after the
//! commit that took the seq to `s` (or after a later one without own
//! events): when that commit is noted (the note before it has a lower
//! seq), what the commits after it added is in their notes. Only *plain*
//! commits are of use: nothing in them but this broker's own publishes
//! and acknowledgements, and no message deleted (a plain commit without
//! own events holds nothing). Their messages are the broker's newest (its
//! own origin, the newest stamps), so they come after everything that
//! read saw, in every delivery order of gossip mode, and within `have`;
//! an acknowledgement can only take messages away, which
//! [`FreshCommits::since`] checks. Past any other commit, or a read whose
//! commit is no longer (or not yet) noted, the pull reads the store as
//! before. A failed commit changed nothing and leaves no note.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use client::wire::Message;

use crate::lock;

/// Notes kept: a waiting pull woken later than this many commits after its
/// read reads the store.
const NOTES_KEPT: usize = 64;

/// Most messages a note keeps of one topic (a pull gives at most 1,000).
const MESSAGES_KEPT: usize = 1000;

/// Most bytes the notes keep in messages, all together: older notes are
/// let go first, and a note above it alone keeps none.
const BYTES_KEPT: usize = 16 << 20;

/// What a kept message costs besides its texts, about.
const MESSAGE_OVERHEAD: usize = 256;

/// What one commit added.
#[derive(Debug, Default, Clone)]
pub struct Note {
    /// This broker's latest own seq after the commit.
    own_seq: u64,
    /// Nothing but own publishes and acknowledgements, nothing deleted.
    plain: bool,
    /// Per topic that got messages: them, or `None` when they were not
    /// kept (nobody waited on the topic, or too many).
    messages: BTreeMap<String, Option<Vec<Message>>>,
    /// Own messages acknowledged by the commit: per (subscriber, topic),
    /// the highest own seq an acknowledgement named.
    acks: BTreeMap<(String, String), u64>,
}

impl Note {
    /// A note for a request's writes, plain until told otherwise.
    pub fn new() -> Note {
        Note {
            plain: true,
            ..Note::default()
        }
    }

    /// The commit wrote something else than own publishes and
    /// acknowledgements (or deleted messages).
    pub fn not_plain(&mut self) {
        self.plain = false;
    }

    /// Messages were added to `topic`; `kept` holds them when a pull waits
    /// on the topic.
    pub fn add_messages(&mut self, topic: &str, kept: Option<Vec<Message>>) {
        let kept = kept.filter(|kept| kept.len() <= MESSAGES_KEPT);
        let Some(entry) = self.messages.get_mut(topic) else {
            self.messages.insert(topic.to_string(), kept);
            return;
        };
        match (entry.as_mut(), kept) {
            (Some(messages), Some(kept)) if messages.len() + kept.len() <= MESSAGES_KEPT => {
                messages.extend(kept);
            }
            _ => *entry = None,
        }
    }

    /// `subscriber` acknowledged own messages of `topic` up to `seq` (or
    /// some of them, the highest `seq`).
    pub fn add_ack(&mut self, subscriber: &str, topic: &str, seq: u64) {
        let highest = self
            .acks
            .entry((subscriber.to_string(), topic.to_string()))
            .or_default();
        *highest = (*highest).max(seq);
    }

    /// About how many bytes the messages kept take.
    fn bytes(&self) -> usize {
        let kept = self.messages.values().flatten().flatten();
        kept.map(|message| {
            let headers: usize = message.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            let texts = message.payload.len() + message.msg_id.as_ref().map_or(0, String::len);
            MESSAGE_OVERHEAD + texts + headers
        })
        .sum()
    }

    /// Lets the messages kept go: pulls read them from the store.
    fn forget_messages(&mut self) {
        self.messages.values_mut().for_each(|kept| *kept = None);
    }

    /// Takes in a successful request's note.
    pub fn append(&mut self, other: Note) {
        self.plain &= other.plain;
        for (topic, kept) in other.messages {
            self.add_messages(&topic, kept);
        }
        for ((subscriber, topic), seq) in other.acks {
            self.add_ack(&subscriber, &topic, seq);
        }
    }
}

/// The latest commits' notes, shared by the writer and the pulls.
#[derive(Default)]
pub struct FreshCommits {
    notes: Mutex<Notes>,
}

/// The notes kept, oldest first, each with the bytes its messages take.
#[derive(Default)]
struct Notes {
    kept: VecDeque<(usize, Note)>,
    bytes: usize,
}

/// What commits after a read added for one pull.
#[derive(Debug)]
pub struct Fresh {
    /// The topic's new messages, oldest first.
    pub messages: Vec<Message>,
    /// The own seq after the last commit they come from: the read they
    /// stand for.
    pub upto: u64,
}

impl FreshCommits {
    /// The writer: a commit is done (this broker's own seq is `own_seq`
    /// after it) and `note` says what it added.
    pub fn note(&self, own_seq: u64, mut note: Note) {
        note.own_seq = own_seq;
        let mut bytes = note.bytes();
        if bytes > BYTES_KEPT {
            note.forget_messages();
            bytes = 0;
        }
        let mut notes = lock(&self.notes);
        notes.bytes += bytes;
        notes.kept.push_back((bytes, note));
        while notes.kept.len() > NOTES_KEPT || notes.bytes > BYTES_KEPT {
            let Some((bytes, _)) = notes.kept.pop_front() else {
                break;
            };
            notes.bytes -= bytes;
        }
    }

    /// What the commits after a read that found own events up to seq
    /// `read` added to `topic` for `subscriber`, when every one of them is
    /// plain and none acknowledged any of those messages for it; `None`
    /// when the store must be read.
    pub fn since(&self, read: u64, subscriber: &str, topic: &str) -> Option<Fresh> {
        let notes = lock(&self.notes);
        let notes = &notes.kept;
        let at = notes.iter().position(|(_, note)| note.own_seq == read)?;
        // Only a note after one of a lower seq is surely the commit that
        // reached `read`: the first after a restart, or after the notes
        // before it were let go, may be a later one without own events.
        if at == 0 || notes[at - 1].1.own_seq >= read {
            return None;
        }
        let key = (subscriber.to_string(), topic.to_string());
        let mut fresh = Fresh {
            messages: Vec::new(),
            upto: read,
        };
        for (_, note) in notes.iter().skip(at + 1) {
            let acknowledges_fresh = note.acks.get(&key).is_some_and(|&seq| seq > read);
            if !note.plain || acknowledges_fresh {
                return None;
            }
            if let Some(kept) = note.messages.get(topic) {
                fresh.messages.extend(kept.as_ref()?.iter().cloned());
            }
            fresh.upto = note.own_seq;
        }
        Some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, seq: u64) -> Message {
        Message {
            id: client::wire::message_id("A:1", seq),
            origin: "A:1".to_string(),
            seq,
            topic: topic.to_string(),
            publisher: "P".to_string(),
            payload: format!("m{seq}"),
            lamport: seq,
            published_at_ms: 0,
            headers: Default::default(),
            msg_id: None,
            deliveries: 0,
        }
    }

    /// A plain note of messages `seqs` on `topic`, kept.
    fn publishes(topic: &str, seqs: &[u64]) -> Note {
        let mut note = Note::new();
        let kept = seqs.iter().map(|&seq| message(topic, seq)).collect();
        note.add_messages(topic, Some(kept));
        note
    }

    /// Notes of two empty commits, the second taking own seq to `seq`: a
    /// read of the state after it can be taken from.
    fn read_at(seq: u64) -> FreshCommits {
        let fresh = FreshCommits::default();
        fresh.note(seq - 1, Note::new());
        fresh.note(seq, Note::new());
        fresh
    }

    fn seqs(fresh: Option<Fresh>) -> Option<Vec<u64>> {
        fresh.map(|fresh| fresh.messages.iter().map(|m| m.seq).collect())
    }

    #[test]
    fn gives_the_topics_messages_of_the_plain_commits_since_the_read() {
        let fresh = read_at(2);
        fresh.note(4, publishes("t", &[3, 4]));
        fresh.note(5, publishes("u", &[5]));
        fresh.note(6, publishes("t", &[6]));
        let got = fresh.since(2, "S", "t").expect("all plain");
        assert_eq!(got.upto, 6);
        assert_eq!(seqs(Some(got)), Some(vec![3, 4, 6]));
        assert_eq!(seqs(fresh.since(4, "S", "t")), Some(vec![6]));
        assert_eq!(seqs(fresh.since(6, "S", "t")), Some(vec![]));
    }

    #[test]
    fn a_read_stands_for_the_first_commit_of_its_own_seq() {
        let fresh = FreshCommits::default();
        fresh.note(0, Note::new());
        fresh.note(2, publishes("t", &[1, 2]));
        // Commits without own events: an empty one, received events.
        fresh.note(2, Note::new());
        fresh.note(3, publishes("t", &[3]));
        assert_eq!(seqs(fresh.since(2, "S", "t")), Some(vec![3]));
        let mut received = Note::new();
        received.not_plain();
        fresh.note(3, received);
        assert_eq!(seqs(fresh.since(3, "S", "t")), None);
    }

    #[test]
    fn a_read_whose_commit_is_not_noted_reads_the_store() {
        // After a restart the notes start empty: the first commit noted
        // with the read's own seq may have come after the read.
        let fresh = FreshCommits::default();
        let mut received = Note::new();
        received.not_plain();
        fresh.note(7, received);
        fresh.note(8, publishes("t", &[8]));
        assert_eq!(seqs(fresh.since(7, "S", "t")), None);
        assert_eq!(seqs(fresh.since(8, "S", "t")), Some(vec![]));
    }

    #[test]
    fn reads_the_store_past_anything_else() {
        let fresh = read_at(2);
        let mut other = publishes("t", &[3]);
        other.not_plain();
        fresh.note(3, other);
        assert_eq!(seqs(fresh.since(2, "S", "t")), None, "not plain");

        let mut unkept = Note::new();
        unkept.add_messages("t", None);
        fresh.note(4, unkept);
        assert_eq!(seqs(fresh.since(3, "S", "t")), None, "not kept");
        assert_eq!(seqs(fresh.since(3, "S", "u")), Some(vec![]));

        assert_eq!(seqs(fresh.since(1000, "S", "t")), None, "not noted yet");
    }

    #[test]
    fn an_acknowledgement_of_a_fresh_message_sends_the_pull_to_the_store() {
        let fresh = read_at(2);
        let mut publish_and_old_ack = publishes("t", &[3]);
        publish_and_old_ack.add_ack("S", "t", 2);
        fresh.note(4, publish_and_old_ack);
        assert_eq!(seqs(fresh.since(2, "S", "t")), Some(vec![3]));
        let mut fresh_ack = Note::new();
        fresh_ack.add_ack("S", "t", 3);
        fresh.note(5, fresh_ack);
        assert_eq!(seqs(fresh.since(2, "S", "t")), None);
        assert_eq!(seqs(fresh.since(2, "R", "t")), Some(vec![3]));
        assert_eq!(seqs(fresh.since(2, "S", "u")), Some(vec![]));
        assert_eq!(
            seqs(fresh.since(4, "S", "t")),
            Some(vec![]),
            "read after it"
        );
    }

    #[test]
    fn a_request_note_joins_the_commits_and_too_many_are_not_kept() {
        let mut note = Note::new();
        note.append(publishes("t", &[1]));
        let mut refused_elsewhere = Note::new();
        refused_elsewhere.not_plain();
        let mut commit_note = note.clone();
        commit_note.append(refused_elsewhere);
        assert!(!commit_note.plain);
        let many: Vec<u64> = (2..=MESSAGES_KEPT as u64 + 1).collect();
        note.append(publishes("t", &many));
        assert_eq!(note.messages.get("t"), Some(&None));
    }

    /// A plain note of one message of `bytes` payload bytes on `topic`.
    fn large(topic: &str, seq: u64, bytes: usize) -> Note {
        let mut note = Note::new();
        let mut kept = message(topic, seq);
        kept.payload = "x".repeat(bytes);
        note.add_messages(topic, Some(vec![kept]));
        note
    }

    #[test]
    fn keeps_a_bounded_number_of_bytes_in_messages() {
        let fresh = read_at(2);
        let third = BYTES_KEPT / 3;
        fresh.note(3, large("t", 3, third));
        fresh.note(4, large("t", 4, third));
        assert_eq!(seqs(fresh.since(2, "S", "t")), Some(vec![3, 4]));
        // A third more lets the oldest notes go (and with note 3, what
        // named the commit of a read at 4).
        fresh.note(5, large("t", 5, third));
        assert_eq!(seqs(fresh.since(2, "S", "t")), None, "forgotten");
        assert_eq!(seqs(fresh.since(4, "S", "t")), None, "forgotten");
        assert_eq!(lock(&fresh.notes).kept.len(), 2);
        assert!(lock(&fresh.notes).bytes <= BYTES_KEPT);
        // One note above the bound keeps none of its messages.
        fresh.note(6, large("t", 6, BYTES_KEPT));
        assert_eq!(seqs(fresh.since(5, "S", "t")), None, "not kept");
        assert_eq!(seqs(fresh.since(5, "S", "u")), Some(vec![]));
    }

    #[test]
    fn keeps_a_bounded_number_of_notes() {
        let fresh = FreshCommits::default();
        for seq in 0..=NOTES_KEPT as u64 {
            fresh.note(seq, Note::new());
        }
        assert_eq!(seqs(fresh.since(0, "S", "t")), None, "forgotten");
        assert_eq!(seqs(fresh.since(1, "S", "t")), None, "its commit forgotten");
        assert_eq!(seqs(fresh.since(2, "S", "t")), Some(vec![]));
        assert_eq!(lock(&fresh.notes).kept.len(), NOTES_KEPT);
    }
}
