//! Per-topic limits (API.md §6.3): which limits a request may set, and the
//! bounds the retention sweep keeps a topic within.

use client::wire::TopicLimits;

/// A topic's limits as the sweep applies them; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<i64>,
}

/// The bounds of `limits`, or why they are not valid (for a `400`).
pub fn check(limits: &TopicLimits) -> Result<Bounds, String> {
    let count = |name: &str, value: Option<u64>| match value {
        Some(0) => Err(format!("limits.{name} must be at least 1")),
        Some(value) if value > i64::MAX as u64 => Err(format!("limits.{name} is too large")),
        _ => Ok(value),
    };
    let max_age_ms = match &limits.max_age {
        None => None,
        Some(text) => {
            let age = humantime::parse_duration(text)
                .map_err(|e| format!("limits.max_age {text:?} is not a duration: {e}"))?;
            match i64::try_from(age.as_millis()) {
                Ok(0) => return Err("limits.max_age must be at least 1ms".to_string()),
                Ok(ms) => Some(ms),
                Err(_) => return Err("limits.max_age is too large".to_string()),
            }
        }
    };
    Ok(Bounds {
        max_messages: count("max_messages", limits.max_messages)?,
        max_bytes: count("max_bytes", limits.max_bytes)?,
        max_age_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: Option<u64>, max_bytes: Option<u64>, age: Option<&str>) -> TopicLimits {
        TopicLimits {
            max_messages,
            max_bytes,
            max_age: age.map(str::to_string),
        }
    }

    #[test]
    fn valid_limits_become_bounds() {
        let bounds = check(&limits(Some(10), Some(1_000), Some("90s"))).unwrap();
        assert_eq!(
            bounds,
            Bounds {
                max_messages: Some(10),
                max_bytes: Some(1_000),
                max_age_ms: Some(90_000)
            }
        );
        let none = check(&TopicLimits::default()).unwrap();
        assert_eq!(none.max_messages.or(none.max_bytes), None);
        assert_eq!(none.max_age_ms, None);
    }

    #[test]
    fn zero_huge_or_unreadable_limits_are_refused() {
        for bad in [
            limits(Some(0), None, None),
            limits(None, Some(0), None),
            limits(None, Some(u64::MAX), None),
            limits(None, None, Some("soon")),
            limits(None, None, Some("0s")),
            limits(None, None, Some("")),
            limits(None, None, Some("100000000000y")),
        ] {
            let refused = check(&bad).unwrap_err();
            assert!(refused.starts_with("limits."), "{refused}");
        }
    }
}
