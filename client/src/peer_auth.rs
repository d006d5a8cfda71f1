//! Authentication between brokers (API.md §5.1): the cluster key, and the
//! HMAC-SHA256 signatures over a peer request and over its answer.
//!
//! A request is signed over its method, path and query, the broker it is
//! for, a timestamp, a random nonce, the forwarding mark (for whom a
//! request is forwarded), the client's `Authorization` header and the
//! SHA-256 of its body (sent in a header of its own, so that the receiver
//! checks the signature before it reads the body, then the body against
//! it); the receiver checks the timestamp window and that it never saw
//! the nonce (see the broker's replay guard). The answer is signed over
//! the request's nonce, its status and its body, so an answer recorded
//! once cannot stand in for another.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::Digest;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Unix time of signing, in milliseconds.
pub const TIME_HEADER: &str = "x-rumor-peer-time";
/// 128 random bits, hex.
pub const NONCE_HEADER: &str = "x-rumor-peer-nonce";
/// The request's or the answer's HMAC, hex.
pub const SIGNATURE_HEADER: &str = "x-rumor-peer-signature";
/// The SHA-256 of the request body, hex.
pub const BODY_HEADER: &str = "x-rumor-peer-body-sha256";

/// The shortest cluster key accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// The secret every broker of a cluster shares.
#[derive(Clone)]
pub struct ClusterKey(Vec<u8>);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// A cluster key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read cluster key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster key {path} holds {bytes} bytes; it needs at least {MIN_KEY_BYTES}")]
    TooShort { path: String, bytes: usize },
}

/// What a peer request is signed over.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path with its query, as sent.
    pub path: &'a str,
    /// The id (`<host>:<port>`) of the broker it is sent to: a request
    /// taken by another broker does not verify there.
    pub target: &'a str,
    pub time_ms: u64,
    pub nonce: &'a str,
    /// The forwarding mark's value (`FORWARDED_HEADER`), empty if none.
    pub forwarded: &'a [u8],
    /// The client's `Authorization` header, forwarded with it.
    pub authorization: &'a [u8],
    /// `body_digest` of the body.
    pub body_sha256: &'a str,
}

impl ClusterKey {
    /// Reads a key file: its content, without trailing whitespace (an
    /// editor's newline), at least `MIN_KEY_BYTES` long.
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let content = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let end = content
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |last| last + 1);
        ClusterKey::new(content[..end].to_vec()).map_err(|bytes| KeyError::TooShort {
            path: path.display().to_string(),
            bytes,
        })
    }

    /// A key of at least `MIN_KEY_BYTES`; else its length.
    pub fn new(bytes: Vec<u8>) -> Result<ClusterKey, usize> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(bytes.len());
        }
        Ok(ClusterKey(bytes))
    }

    /// The request's signature, hex.
    pub fn sign_request(&self, request: &SignedRequest<'_>) -> String {
        hex::encode(self.request_mac(request).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the request's, compared in constant time.
    pub fn verifies_request(&self, request: &SignedRequest<'_>, signature: &str) -> bool {
        verifies(self.request_mac(request), signature)
    }

    /// The signature of an answer to the request that carried `nonce`, hex.
    pub fn sign_answer(&self, nonce: &str, status: u16, body: &[u8]) -> String {
        hex::encode(self.answer_mac(nonce, status, body).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is that of this answer to the request that
    /// carried `nonce`.
    pub fn verifies_answer(&self, nonce: &str, status: u16, body: &[u8], signature: &str) -> bool {
        verifies(self.answer_mac(nonce, status, body), signature)
    }

    fn request_mac(&self, request: &SignedRequest<'_>) -> HmacSha256 {
        let mut mac = self.mac(b"rumor peer request v1");
        for field in [
            request.method.as_bytes(),
            request.path.as_bytes(),
            request.target.as_bytes(),
            &request.time_ms.to_be_bytes(),
            request.nonce.as_bytes(),
            request.forwarded,
            request.authorization,
            request.body_sha256.as_bytes(),
        ] {
            add_field(&mut mac, field);
        }
        mac
    }

    fn answer_mac(&self, nonce: &str, status: u16, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac(b"rumor peer answer v1");
        for field in [nonce.as_bytes(), &status.to_be_bytes(), body] {
            add_field(&mut mac, field);
        }
        mac
    }

    fn mac(&self, purpose: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        add_field(&mut mac, purpose);
        mac
    }
}

/// Each field with its length first, so that no two different requests
/// sign the same bytes.
fn add_field(mac: &mut HmacSha256, field: &[u8]) {
    mac.update(&(field.len() as u64).to_be_bytes());
    mac.update(field);
}

fn verifies(mac: HmacSha256, signature: &str) -> bool {
    match hex::decode(signature) {
        Ok(bytes) => mac.verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The SHA-256 of a request body, hex, as `SignedRequest` takes it.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// A fresh nonce: 128 random bits, hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    hex::encode(bytes)
}

/// Now, as Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ClusterKey {
        ClusterKey::new(vec![byte; MIN_KEY_BYTES]).unwrap()
    }

    fn request(body_sha256: &str) -> SignedRequest<'_> {
        SignedRequest {
            method: "POST",
            path: "/peer/sync",
            target: "h:2",
            time_ms: 1_700_000_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            forwarded: b"",
            authorization: b"",
            body_sha256,
        }
    }

    #[test]
    fn a_request_verifies_with_the_same_key_only() {
        let body = body_digest(b"{}");
        let signature = key(1).sign_request(&request(&body));
        assert!(key(1).verifies_request(&request(&body), &signature));
        assert!(!key(2).verifies_request(&request(&body), &signature));
    }

    #[test]
    fn every_signed_field_counts() {
        let (body, other_body) = (body_digest(b"{}"), body_digest(b"{ }"));
        let signed = request(&body);
        let signature = key(1).sign_request(&signed);
        let changed = [
            SignedRequest {
                method: "PUT",
                ..signed
            },
            SignedRequest {
                path: "/peer/election",
                ..signed
            },
            SignedRequest {
                target: "h:3",
                ..signed
            },
            SignedRequest {
                time_ms: signed.time_ms + 1,
                ..signed
            },
            SignedRequest {
                nonce: "ffffffffffffffffffffffffffffffff",
                ..signed
            },
            SignedRequest {
                forwarded: b"client",
                ..signed
            },
            SignedRequest {
                authorization: b"Bearer x",
                ..signed
            },
            SignedRequest {
                body_sha256: &other_body,
                ..signed
            },
        ];
        for other in changed {
            assert!(!key(1).verifies_request(&other, &signature), "{other:?}");
        }
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let a = SignedRequest {
            path: "/peer/a",
            nonce: "bc",
            ..request("")
        };
        let b = SignedRequest {
            path: "/peer/ab",
            nonce: "c",
            ..request("")
        };
        assert_ne!(key(1).sign_request(&a), key(1).sign_request(&b));
    }

    #[test]
    fn an_answer_is_bound_to_its_request() {
        let signature = key(1).sign_answer("n1", 200, b"{}");
        assert!(key(1).verifies_answer("n1", 200, b"{}", &signature));
        assert!(!key(1).verifies_answer("n2", 200, b"{}", &signature));
        assert!(!key(1).verifies_answer("n1", 201, b"{}", &signature));
        assert!(!key(1).verifies_answer("n1", 200, b"[]", &signature));
        assert!(!key(1).verifies_answer("n1", 200, b"{}", "not hex"));
    }

    #[test]
    fn a_key_file_needs_32_bytes_after_trimming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, format!("{}\n", "k".repeat(31))).unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(KeyError::TooShort { bytes: 31, .. })
        ));
        std::fs::write(&path, format!("{}\n", "k".repeat(32))).unwrap();
        let loaded = ClusterKey::load(&path).unwrap();
        assert_eq!(format!("{loaded:?}"), "ClusterKey(..)");
        assert!(matches!(
            ClusterKey::load(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(new_nonce().len(), 32);
    }
}
