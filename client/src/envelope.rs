//! End-to-end payload encryption (API.md §5.4): the key of `--key-file`
//! and the envelope the publisher seals each payload in and the subscriber
//! opens. It is the only code that handles keys and ciphertext; brokers
//! store and deliver envelopes as ordinary text and never see a key.
//!
//! An envelope is `aes256gcm:` + base64 (standard, padded) of
//! nonce ‖ ciphertext ‖ tag: AES-256-GCM with a random 96-bit nonce per
//! message and the topic name as associated data, so an envelope moved to
//! another topic does not open.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::common::{getrandom, Generate};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key as CipherKey, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// What every envelope starts with.
pub const PREFIX: &str = "aes256gcm:";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// A 256-bit AES-GCM key. Its `Debug` shows no key material.
pub struct Key {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a key file gave no key; the text names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} does not hold a 256-bit key as 64 hex characters", path.display())]
    Format { path: PathBuf },
}

/// Why a payload could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot draw a random nonce: {0}")]
    Nonce(getrandom::Error),
    #[error("payload too long to encrypt")]
    TooLong,
}

/// Why a payload did not open. The text holds every cause (there is no
/// `source`), as the CLIs print an error's whole chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not an envelope (no `{PREFIX}` prefix)")]
    NotEnvelope,
    #[error("envelope is not base64: {0}")]
    Base64(base64::DecodeError),
    #[error("envelope too short for a nonce and a tag")]
    TooShort,
    #[error("authentication failed (another key or topic, or a changed envelope)")]
    Rejected,
    #[error("plaintext is not UTF-8")]
    NotUtf8,
}

impl Key {
    /// Reads the key from `path`: 64 hex characters, surrounding whitespace allowed.
    pub fn read(path: &Path) -> Result<Key, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Key::from_hex(&text).ok_or_else(|| KeyError::Format {
            path: path.to_owned(),
        })
    }

    /// The key written as 64 hex characters, surrounding whitespace allowed.
    pub fn from_hex(text: &[u8]) -> Option<Key> {
        let mut key = CipherKey::<Aes256Gcm>::default();
        hex::decode_to_slice(text.trim_ascii(), &mut key).ok()?;
        Some(Key {
            cipher: Aes256Gcm::new(&key),
        })
    }

    /// `plaintext` sealed for `topic`, as the envelope text to publish.
    pub fn seal(&self, topic: &str, plaintext: &str) -> Result<String, SealError> {
        self.seal_bytes(topic, plaintext.as_bytes())
    }

    fn seal_bytes(&self, topic: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let nonce = Nonce::try_generate().map_err(SealError::Nonce)?;
        let payload = Payload {
            msg: plaintext,
            aad: topic.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| SealError::TooLong)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// The plaintext of `envelope`, a payload delivered on `topic`.
    pub fn open(&self, topic: &str, envelope: &str) -> Result<String, OpenError> {
        let encoded = envelope
            .strip_prefix(PREFIX)
            .ok_or(OpenError::NotEnvelope)?;
        let bytes = STANDARD.decode(encoded).map_err(OpenError::Base64)?;
        let (nonce, sealed) = bytes
            .split_first_chunk::<NONCE_BYTES>()
            .filter(|(_, sealed)| sealed.len() >= TAG_BYTES)
            .ok_or(OpenError::TooShort)?;
        let payload = Payload {
            msg: sealed,
            aad: topic.as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(&Nonce::from(*nonce), payload)
            .map_err(|_| OpenError::Rejected)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::NotUtf8)
    }
}

/// The value of one hex digit.
#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const OTHER_HEX: &str = "ffeeddccbbaa99887766554433221100FFEEDDCCBBAA99887766554433221100";

    fn key(hex: &str) -> Key {
        Key::from_hex(hex.as_bytes()).expect("a valid key")
    }

    #[test]
    fn round_trip_gives_the_plaintext_back() {
        let key = key(HEX);
        for plaintext in ["", "hello", "grüße, 世界 🎉", &"x".repeat(100_000)] {
            let envelope = key.seal("news", plaintext).unwrap();
            assert!(envelope.starts_with(PREFIX), "{envelope}");
            assert_eq!(key.open("news", &envelope).unwrap(), plaintext);
        }
    }

    #[test]
    fn envelope_is_padded_base64_of_nonce_ciphertext_and_tag() {
        let envelope = key(HEX).seal("news", "hello").unwrap();
        let bytes = STANDARD.decode(&envelope[PREFIX.len()..]).unwrap();
        assert_eq!(bytes.len(), NONCE_BYTES + "hello".len() + TAG_BYTES);
    }

    #[test]
    fn each_seal_draws_a_fresh_nonce() {
        let key = key(HEX);
        let first = key.seal("news", "same").unwrap();
        let second = key.seal("news", "same").unwrap();
        assert_ne!(first[..PREFIX.len() + 16], second[..PREFIX.len() + 16]);
    }

    #[test]
    fn another_key_does_not_open() {
        let envelope = key(HEX).seal("news", "secret").unwrap();
        assert_eq!(
            key(OTHER_HEX).open("news", &envelope),
            Err(OpenError::Rejected)
        );
    }

    #[test]
    fn a_changed_byte_does_not_open() {
        let key = key(HEX);
        let envelope = key.seal("news", "secret").unwrap();
        let mut bytes = STANDARD.decode(&envelope[PREFIX.len()..]).unwrap();
        for index in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[index] ^= 1;
            let tampered = format!("{PREFIX}{}", STANDARD.encode(&bytes));
            assert_eq!(key.open("news", &tampered), Err(OpenError::Rejected));
            bytes[index] ^= 1;
        }
    }

    #[test]
    fn another_topic_does_not_open() {
        let key = key(HEX);
        let envelope = key.seal("news", "secret").unwrap();
        assert_eq!(key.open("sport", &envelope), Err(OpenError::Rejected));
    }

    #[test]
    fn a_payload_without_the_prefix_is_not_an_envelope() {
        let key = key(HEX);
        for payload in ["hello", "", "AES256GCM:AAAA", " aes256gcm:AAAA"] {
            assert_eq!(key.open("news", payload), Err(OpenError::NotEnvelope));
        }
    }

    #[test]
    fn bad_base64_does_not_open() {
        let key = key(HEX);
        // Not the alphabet, padding missing, padding where none belongs.
        for body in ["not base64!", "QUJDRA", "QUJD=", "QU-D"] {
            let error = key.open("news", &format!("{PREFIX}{body}")).unwrap_err();
            assert!(matches!(error, OpenError::Base64(_)), "{body}: {error:?}");
            // The CLIs print the whole chain: a source would show twice.
            assert!(std::error::Error::source(&error).is_none(), "{body}");
        }
    }

    #[test]
    fn an_envelope_shorter_than_nonce_and_tag_does_not_open() {
        let key = key(HEX);
        for length in [0, NONCE_BYTES, NONCE_BYTES + TAG_BYTES - 1] {
            let envelope = format!("{PREFIX}{}", STANDARD.encode(vec![7; length]));
            assert_eq!(key.open("news", &envelope), Err(OpenError::TooShort));
        }
    }

    #[test]
    fn a_plaintext_that_is_not_utf8_does_not_open() {
        let key = key(HEX);
        let envelope = key.seal_bytes("news", &[0xff, 0xfe]).unwrap();
        assert_eq!(key.open("news", &envelope), Err(OpenError::NotUtf8));
    }

    #[test]
    fn key_is_64_hex_digits_with_surrounding_whitespace() {
        let sealed = key(HEX).seal("t", "m").unwrap();
        for text in [
            HEX.to_string(),
            format!("  {HEX}\n"),
            format!("\t{HEX}\r\n"),
        ] {
            let parsed = Key::from_hex(text.as_bytes()).expect(&text);
            assert_eq!(parsed.open("t", &sealed).unwrap(), "m");
        }
        let upper = key(&HEX.to_uppercase());
        assert_eq!(upper.open("t", &sealed).unwrap(), "m");
    }

    #[test]
    fn anything_else_is_no_key() {
        let inner_space = format!("{} {}", &HEX[..32], &HEX[32..]);
        let plus = format!("+{}", &HEX[1..]);
        let non_ascii = format!("é{}", &HEX[2..]);
        let cases = [
            "",
            &HEX[..62],
            &HEX[..63],
            &format!("{HEX}00"),
            &HEX.replace('a', "g"),
            &inner_space,
            &plus,
            &non_ascii,
            &format!("0x{}", &HEX[2..]),
        ];
        for text in cases {
            assert!(Key::from_hex(text.as_bytes()).is_none(), "{text:?}");
        }
    }

    #[test]
    fn key_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, format!("{HEX}\n")).unwrap();
        assert!(Key::read(&good).is_ok());

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not a key\n").unwrap();
        let missing = dir.path().join("missing.key");
        for path in [bad, missing] {
            let error = Key::read(&path).unwrap_err().to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!("{:?}", key(HEX));
        assert_eq!(shown, "Key(..)");
    }
}
