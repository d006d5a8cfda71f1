//! The naming rule for topics, publishers and subscribers (`API.md` §2),
//! and broker ids (`<host>:<port>`, API.md §1).

use std::cmp::Ordering;

use client::peer::EventId;

use crate::error::ApiError;

const MAX_NAME_CHARS: usize = 128;

/// True for 1–128 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A broker id, `<host>:<port>` split at its last colon: a host of 1–255
/// characters without spaces or control characters, and a port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerId<'a> {
    pub host: &'a str,
    pub port: u16,
}

impl<'a> BrokerId<'a> {
    /// The id `id`, or `None` when it is not one.
    pub fn parse(id: &'a str) -> Option<BrokerId<'a>> {
        let (host, port) = id.rsplit_once(':')?;
        let host_ok = !host.is_empty()
            && host.len() <= 255
            && !host.chars().any(|c| c.is_whitespace() || c.is_control());
        let port = port.parse().ok()?;
        host_ok.then_some(BrokerId { host, port })
    }

    /// The order of API.md §4 (the greatest id leads): host as text, then
    /// port as a number; ids that are not ids come after, by whole text.
    /// Two different ids never compare equal (`h:010` and `h:10` fall back
    /// to their text), so the order decides every election.
    pub fn compare(a: &str, b: &str) -> Ordering {
        match (BrokerId::parse(a), BrokerId::parse(b)) {
            (Some(a), Some(b)) => a.host.cmp(b.host).then(a.port.cmp(&b.port)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
        .then_with(|| a.cmp(b))
    }
}

/// True for a broker id (see [`BrokerId`]).
pub fn is_broker_id(id: &str) -> bool {
    BrokerId::parse(id).is_some()
}

/// Checks a name, naming what it is for in the error.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidName(format!(
            "{what} name {name:?} must be 1-{MAX_NAME_CHARS} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// A message id, `<origin>/<seq>` (see `client::wire::message_id`), as
/// the event it names; `None` unless the origin is a broker id and the
/// seq a number from 1.
pub fn parse_message_id(id: &str) -> Option<EventId> {
    let (origin, seq) = id.rsplit_once('/')?;
    let seq: u64 = seq
        .parse()
        .ok()
        .filter(|&seq| seq >= 1 && seq <= i64::MAX as u64)?;
    is_broker_id(origin).then(|| EventId {
        origin: origin.to_string(),
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_an_origin_and_a_seq() {
        let id = parse_message_id("localhost:3000/42").unwrap();
        assert_eq!((id.origin.as_str(), id.seq), ("localhost:3000", 42));
        for bad in [
            "",
            "localhost:3000",
            "localhost:3000/",
            "localhost:3000/0",
            "/4",
            "a b:1/4",
            "h:1/x",
            "h:1/-1",
        ] {
            assert!(parse_message_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn accepts_the_allowed_alphabet() {
        for name in ["a", "news", "P1", "a.b_c-d", &"x".repeat(128)] {
            assert!(is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for name in [
            "",
            &"x".repeat(129),
            "a b",
            "a/b",
            "é",
            "a?",
            "a%20",
            "..\u{0}",
        ] {
            assert!(!is_valid_name(name), "{name:?}");
        }
    }

    #[test]
    fn broker_ids_are_host_and_port() {
        for id in ["localhost:3000", "127.0.0.1:1", "[::1]:80"] {
            assert!(is_broker_id(id), "{id}");
        }
        for id in ["", "localhost", ":3000", "a b:1", "host:port", "host:70000"] {
            assert!(!is_broker_id(id), "{id:?}");
        }
    }

    #[test]
    fn error_is_invalid_name() {
        assert!(matches!(
            check_name("topic", "a b"),
            Err(ApiError::InvalidName(_))
        ));
    }
}
