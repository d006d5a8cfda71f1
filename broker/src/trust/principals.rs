//! Client principals (API.md §5.2): the `--auth-file` (TOML, token hashes
//! only), who a token belongs to, and what each caller may do.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The principals of an auth file.
#[derive(Debug)]
pub struct Principals(Vec<Arc<Principal>>);

/// One principal and its permissions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub name: String,
    #[serde(deserialize_with = "token_hash")]
    token_sha256: [u8; 32],
    #[serde(default)]
    act_as: Patterns,
    #[serde(default)]
    publish: Patterns,
    #[serde(default)]
    subscribe: Patterns,
    #[serde(default)]
    admin: bool,
}

/// Without the token hash.
impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("act_as", &self.act_as)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    principal: Vec<Principal>,
}

/// Names, or prefixes followed by `*` (`"*"` matches every name).
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "Vec<String>")]
struct Patterns(Vec<String>);

impl TryFrom<Vec<String>> for Patterns {
    type Error = String;

    fn try_from(patterns: Vec<String>) -> Result<Self, String> {
        for pattern in &patterns {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            if name.contains('*') {
                return Err(format!("pattern {pattern:?}: `*` may only end a pattern"));
            }
        }
        Ok(Patterns(patterns))
    }
}

impl Patterns {
    fn matches(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => pattern == name,
            })
    }
}

fn token_hash<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
    let text = String::deserialize(deserializer)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut hash).map_err(|_| {
        serde::de::Error::custom("token_sha256 must be 64 hex characters (see `broker token`)")
    })?;
    Ok(hash)
}

impl Principals {
    /// Reads and checks an auth file; the error is one line naming it.
    pub fn load(path: &Path) -> Result<Principals, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
        Principals::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Principals, String> {
        let file: AuthFile = toml::from_str(text).map_err(|error| {
            // The line number and what is wrong, never the line itself: it
            // may hold a token pasted by mistake.
            let line = error.span().map(|span| {
                text.as_bytes()[..span.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let what = error.message().lines().collect::<Vec<_>>().join(" ");
            match line {
                Some(line) => format!("line {line}: {what}"),
                None => what,
            }
        })?;
        Ok(Principals(
            file.principal.into_iter().map(Arc::new).collect(),
        ))
    }

    /// The principal whose token this is, comparing hashes in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every principal is compared: the time taken tells nothing.
        for principal in &self.0 {
            if bool::from(principal.token_sha256.ct_eq(&hash)) && found.is_none() {
                found = Some(principal.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Who makes a request, as far as permissions go.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Client authentication is off (no `--auth-file`): v1, all allowed.
    Open,
    /// Another broker of the cluster (a request signed with the cluster key).
    Cluster,
    Principal(Arc<Principal>),
}

/// A permission a caller lacks (a `403`), with the reason.
#[derive(Debug)]
pub struct Denied(pub String);

impl Caller {
    /// Registering or acting as publisher or subscriber `id`.
    pub fn may_act_as(&self, id: &str) -> Result<(), Denied> {
        self.check(
            |p| p.act_as.matches(id),
            || format!("may not act as {id:?}"),
        )
    }

    /// Creating and publishing to `topic`.
    pub fn may_publish(&self, topic: &str) -> Result<(), Denied> {
        self.check(
            |p| p.publish.matches(topic),
            || format!("may not publish to topic {topic:?}"),
        )
    }

    /// Subscribing to and pulling from `topic`.
    pub fn may_subscribe(&self, topic: &str) -> Result<(), Denied> {
        self.check(
            |p| p.subscribe.matches(topic),
            || format!("may not subscribe to topic {topic:?}"),
        )
    }

    /// Changing the cluster (mode, members) and deleting any topic.
    pub fn may_administer(&self) -> Result<(), Denied> {
        self.check(|p| p.admin, || "needs an admin token".to_string())
    }

    /// An admin principal: deletes any topic, whoever owns it. (Without
    /// `--auth-file` only the owner does, as in v1.)
    pub fn overrides_ownership(&self) -> bool {
        matches!(self, Caller::Principal(p) if p.admin)
    }

    fn check(
        &self,
        allowed: impl Fn(&Principal) -> bool,
        denied: impl Fn() -> String,
    ) -> Result<(), Denied> {
        match self {
            Caller::Open | Caller::Cluster => Ok(()),
            Caller::Principal(p) if allowed(p) => Ok(()),
            Caller::Principal(p) => Err(Denied(format!("principal {:?} {}", p.name, denied()))),
        }
    }
}

pub use client::connect::new_token;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(token: &str) -> String {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        format!(
            r#"
            [[principal]]
            name = "alice"
            token_sha256 = "{hash}"
            act_as = ["alice", "worker-*"]
            publish = ["news", "orders.*"]
            subscribe = ["news"]

            [[principal]]
            name = "root"
            token_sha256 = "{}"
            act_as = ["*"]
            admin = true
            "#,
            hex::encode(Sha256::digest(b"root-token"))
        )
    }

    fn caller(principals: &Principals, token: &str) -> Caller {
        Caller::Principal(principals.authenticate(token).expect("a known token"))
    }

    #[test]
    fn a_token_names_its_principal() {
        let principals = Principals::parse(&file("alice-token")).unwrap();
        assert_eq!(principals.len(), 2);
        let alice = principals.authenticate("alice-token").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(!format!("{alice:?}").contains(&hex::encode(alice.token_sha256)));
        assert_eq!(principals.authenticate("root-token").unwrap().name, "root");
        assert!(principals.authenticate("alice-token ").is_none());
        assert!(principals.authenticate("").is_none());
    }

    #[test]
    fn permissions_follow_the_patterns() {
        let principals = Principals::parse(&file("t")).unwrap();
        let alice = caller(&principals, "t");
        assert!(alice.may_act_as("alice").is_ok());
        assert!(alice.may_act_as("worker-7").is_ok());
        assert!(alice.may_act_as("worker").is_err());
        assert!(alice.may_act_as("bob").is_err());
        assert!(alice.may_publish("orders.eu").is_ok());
        assert!(alice.may_publish("orders").is_err());
        assert!(alice.may_subscribe("news").is_ok());
        assert!(alice.may_subscribe("orders.eu").is_err());
        assert!(alice.may_administer().is_err() && !alice.overrides_ownership());
        let Denied(denied) = alice.may_act_as("bob").unwrap_err();
        assert!(
            denied.contains("alice") && denied.contains("bob"),
            "{denied}"
        );
        let root = caller(&principals, "root-token");
        assert!(root.overrides_ownership() && root.may_act_as("anyone").is_ok());
        assert!(root.may_publish("news").is_err());
        assert!(Caller::Open.may_administer().is_ok() && !Caller::Open.overrides_ownership());
        assert!(Caller::Cluster.may_publish("x").is_ok());
    }

    #[test]
    fn a_bad_file_is_refused_with_a_reason() {
        for (text, reason) in [
            ("[[principal]]\nname = \"a\"\n", "token_sha256"),
            (
                "[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n",
                "64 hex",
            ),
            (
                &format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nact_as = [\"a*b\"]\n",
                    "0".repeat(64)
                ),
                "only end",
            ),
            (
                &format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nadmn = true\n",
                    "0".repeat(64)
                ),
                "admn",
            ),
            ("[[principal]\n", "line 1"),
            (
                "[[principal]]\nname = \"a\"\ntoken = 0123456789abcdef\n",
                "line 3",
            ),
            (
                &format!("[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"\ntoken = \"0123456789abcdef\"\n", "0".repeat(64)),
                "line 4",
            ),
        ] {
            let error = Principals::parse(text).unwrap_err();
            assert!(error.contains(reason), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
            assert!(!error.contains("0123456789abcdef"), "echoes a token: {error}");
        }
        assert_eq!(Principals::parse("").unwrap().len(), 0);
    }

    #[test]
    fn new_tokens_match_their_hash() {
        let (token, hash) = new_token();
        assert!(token.len() >= 32);
        let text = format!("[[principal]]\nname = \"n\"\ntoken_sha256 = \"{hash}\"\n");
        let principals = Principals::parse(&text).unwrap();
        assert_eq!(principals.authenticate(&token).unwrap().name, "n");
        assert_ne!(new_token().0, token);
    }
}
