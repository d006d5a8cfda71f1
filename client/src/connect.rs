//! How a program reaches brokers (API.md §5.2, §5.3): plain HTTP or HTTPS
//! and which certificate authorities it trusts then, the client token it
//! shows, and between brokers the cluster key it signs with (`peer_auth`).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::peer_auth::ClusterKey;
use crate::peers::PeerAddr;

/// The environment variable a token is read from without `--token-file`.
pub const TOKEN_ENV: &str = "RUMOR_TOKEN";

/// Time to connect to a broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle keep-alive connection is kept for the next call: well
/// below the broker's own keep-alive (actix-web's default, 5 s, counted from
/// a clock it updates every 500 ms, so shorter on a busy broker), so that a
/// call never goes out on a connection the broker is closing at that moment
/// (which fails it with "connection reset by peer" or "connection closed
/// before message completed").
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Transport and credentials for talking to brokers; the default is plain
/// HTTP without credentials (v1).
#[derive(Clone, Default)]
pub struct Connect {
    tls: Option<Roots>,
    token: Option<Token>,
    cluster_key: Option<Arc<ClusterKey>>,
}

/// Which certificate authorities HTTPS trusts.
#[derive(Clone)]
enum Roots {
    System,
    Only(Vec<reqwest::Certificate>),
}

/// A client token (`Authorization: Bearer`), never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token as given (surrounding whitespace removed); it must be
    /// visible ASCII to fit in a header.
    pub fn new(text: &str) -> Result<Token, ConnectError> {
        let token = text.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConnectError(
                "a token must be one word of visible ASCII characters".to_string(),
            ));
        }
        Ok(Token(token.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why the transport or credentials cannot be used, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("https", &self.tls.is_some())
            .field("token", &self.token.is_some())
            .field("cluster_key", &self.cluster_key.is_some())
            .finish()
    }
}

impl Connect {
    /// HTTPS trusting only the certificates of a PEM bundle.
    pub fn tls_ca(self, path: &Path) -> Result<Connect, ConnectError> {
        let pem = std::fs::read(path)
            .map_err(|e| ConnectError(format!("cannot read CA file {}: {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certificates| !certificates.is_empty())
            .ok_or_else(|| {
                ConnectError(format!(
                    "CA file {} holds no PEM certificate",
                    path.display()
                ))
            })?;
        Connect {
            tls: Some(Roots::Only(certificates)),
            ..self
        }
        .checked()
    }

    /// HTTPS trusting the system's certificate authorities.
    pub fn system_tls(self) -> Result<Connect, ConnectError> {
        Connect {
            tls: Some(Roots::System),
            ..self
        }
        .checked()
    }

    /// Shows `token` on every request.
    pub fn token(self, token: Token) -> Connect {
        Connect {
            token: Some(token),
            ..self
        }
    }

    /// Signs every request with the cluster key and checks every answer.
    pub fn cluster_key(self, key: ClusterKey) -> Connect {
        Connect {
            cluster_key: Some(Arc::new(key)),
            ..self
        }
    }

    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// The base URL of a broker, in this transport's scheme.
    pub fn url(&self, broker: &PeerAddr) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}:{}", broker.host, broker.port)
    }

    pub(crate) fn shown_token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    pub(crate) fn signing_key(&self) -> Option<&Arc<ClusterKey>> {
        self.cluster_key.as_ref()
    }

    /// A new HTTP client (its own connection pool) for this transport.
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, ConnectError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(IDLE_TIMEOUT);
        builder = match &self.tls {
            None => builder,
            Some(Roots::System) => builder.https_only(true),
            Some(Roots::Only(certificates)) => builder
                .https_only(true)
                .tls_certs_only(certificates.iter().cloned()),
        };
        builder
            .build()
            .map_err(|e| ConnectError(format!("cannot set up HTTPS: {}", innermost(&e))))
    }

    /// Fails now, not on the first call, when no client can be built.
    fn checked(self) -> Result<Connect, ConnectError> {
        self.http_client()?;
        Ok(self)
    }
}

/// rustls's cryptography (ring), chosen once for the process; call it
/// before building a `reqwest::Client` of one's own.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only when a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The innermost cause of an error, e.g. "invalid peer certificate: UnknownIssuer".
pub(crate) fn innermost(error: &dyn std::error::Error) -> String {
    let mut source = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

/// A new random client token (256 bits, hex) and its SHA-256 (hex), the
/// `token_sha256` of an `--auth-file` principal (`broker token`, `rumor
/// token`).
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    let token = hex::encode(bytes);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_visible_word_and_never_printed() {
        assert_eq!(Token::new(" abc \n").unwrap().as_str(), "abc");
        assert!(Token::new("").is_err());
        assert!(Token::new("a b").is_err());
        assert!(Token::new("é").is_err());
        assert_eq!(format!("{:?}", Token::new("secret").unwrap()), "Token(..)");
    }

    #[test]
    fn the_scheme_follows_the_transport() {
        let broker = PeerAddr {
            host: "localhost".to_string(),
            port: 3000,
        };
        assert_eq!(Connect::default().url(&broker), "http://localhost:3000");
        let https = Connect::default().system_tls().unwrap();
        assert_eq!(https.url(&broker), "https://localhost:3000");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let error = Connect::default().tls_ca(&path).unwrap_err();
        assert!(error.0.contains("holds no PEM certificate"), "{error}");
        let missing = Connect::default()
            .tls_ca(&dir.path().join("none"))
            .unwrap_err();
        assert!(missing.0.contains("cannot read CA file"), "{missing}");
    }
}
