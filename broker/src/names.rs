//! The naming rule for topics, publishers and subscribers (`API.md` §2).

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

/// True for a broker id: `<host>:<port>`, a host without spaces or control
/// characters and a port number.
pub fn is_broker_id(id: &str) -> bool {
    id.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.len() <= 255
            && !host.chars().any(|c| c.is_whitespace() || c.is_control())
            && port.parse::<u16>().is_ok()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
