//! The peer list file (`globalState.csv`): one `host,port` per line, no
//! header; blank lines and `#` comments are ignored.

use std::fmt;
use std::path::Path;

/// One broker address from the peer list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    /// The broker id: `<host>:<port>` exactly as written.
    pub fn id(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("cannot read peer list {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Malformed {
        path: String,
        line: u64,
        reason: String,
    },
}

/// Reads a peer list file.
pub fn load_peers(path: &Path) -> Result<Vec<PeerAddr>, PeersError> {
    let text = std::fs::read_to_string(path).map_err(|source| PeersError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_peers(&text).map_err(|(line, reason)| PeersError::Malformed {
        path: path.display().to_string(),
        line,
        reason,
    })
}

/// Parses peer list text; an error names the 1-based line number.
pub fn parse_peers(text: &str) -> Result<Vec<PeerAddr>, (u64, String)> {
    let mut peers = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .from_reader(line.as_bytes())
            .records()
            .next()
            .transpose()
            .map_err(|e| (line_no, e.to_string()))?
            .ok_or_else(|| (line_no, "expected host,port".to_string()))?;
        peers.push(parse_record(&record).map_err(|reason| (line_no, reason))?);
    }
    Ok(peers)
}

fn parse_record(record: &csv::StringRecord) -> Result<PeerAddr, String> {
    if record.len() != 2 {
        return Err(format!(
            "expected 2 fields host,port, found {}",
            record.len()
        ));
    }
    let host = &record[0];
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("invalid host {host:?}"));
    }
    let port = record[1]
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port {:?} (expected 1-65535)", &record[1]))?;
    Ok(PeerAddr {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_skipping_blanks_and_comments() {
        let text = "# cluster\nlocalhost,3000\n\n  localhost , 3001 \n#x,1\n";
        let peers = parse_peers(text).unwrap();
        assert_eq!(
            peers.iter().map(PeerAddr::id).collect::<Vec<_>>(),
            ["localhost:3000", "localhost:3001"]
        );
    }

    #[test]
    fn malformed_line_names_its_number() {
        assert_eq!(parse_peers("localhost,3000\nlocalhost\n").unwrap_err().0, 2);
        assert_eq!(parse_peers("a,1\n\nb,notaport\n").unwrap_err().0, 3);
        assert_eq!(parse_peers("a,1,2\n").unwrap_err().0, 1);
        assert_eq!(parse_peers(",1\n").unwrap_err().0, 1);
        assert_eq!(parse_peers("a,0\n").unwrap_err().0, 1);
    }

    #[test]
    fn load_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_peers(&dir.path().join("nope.csv")).unwrap_err();
        assert!(err.to_string().contains("cannot read peer list"));
    }
}
