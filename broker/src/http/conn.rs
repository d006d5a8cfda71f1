//! The connection under actix-http: a stream wrapper that gives the answers
//! actix-http writes by itself the JSON error body of API.md §2 — `400` for
//! a malformed request head, `431` for a head too large, `408` for a head
//! that does not arrive in time. actix-http sends those with an empty body
//! and closes the connection, and offers no hook to change them; the
//! broker's own errors always carry a JSON body, so an empty-bodied 400,
//! 408 or 431 on the wire can only be actix-http's.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use client::wire::{ErrorBody, ErrorDetail};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bare HTTP-layer errors are rewritten.
pub struct JsonErrors<IO> {
    io: IO,
    /// A rewritten answer being written in place of actix-http's.
    rewrite: Option<Rewrite>,
}

/// The longest head actix-http writes for its own errors.
const MAX_HEAD_BYTES: usize = 512;

struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    /// How many bytes of the caller's buffer it stands for.
    replaces: usize,
}

impl<IO> JsonErrors<IO> {
    pub fn new(io: IO) -> JsonErrors<IO> {
        JsonErrors { io, rewrite: None }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonErrors<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonErrors<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none() {
            match rewritten(buf) {
                Some(rewrite) => this.rewrite = Some(rewrite),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        let rewrite = this.rewrite.as_mut().expect("set above");
        // The caller calls again with the same buffer until it is taken.
        while rewrite.written < rewrite.bytes.len() {
            let rest = &rewrite.bytes[rewrite.written..];
            match ready!(Pin::new(&mut this.io).poll_write(cx, rest))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => rewrite.written += n,
            }
        }
        let replaced = rewrite.replaces;
        this.rewrite = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The answer to write instead, when `buf` starts with one of
/// actix-http's own empty-bodied error answers.
fn rewritten(buf: &[u8]) -> Option<Rewrite> {
    // Cheap checks first: this runs on every write of every answer.
    let status_class = buf.get(b"HTTP/1.1 ".len())?;
    if !(buf.starts_with(b"HTTP/1.") && *status_class == b'4') {
        return None;
    }
    // An empty-bodied error's head is short.
    let head = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let head_end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status_line = head.lines().next()?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .split(' ')
        .next()?;
    let (code, message) = match status {
        "400" => ("bad_request", "malformed HTTP request"),
        "408" => (
            "request_timeout",
            "the request head was not received in time",
        ),
        "431" => ("header_too_large", "the request head is too large"),
        _ => return None,
    };
    let empty = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !empty {
        return None;
    }
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    })
    .expect("strings serialize");
    let bytes = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some(Rewrite {
        bytes: bytes.into_bytes(),
        written: 0,
        replaces: head_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BARE_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";

    #[test]
    fn bare_errors_get_the_json_body() {
        for (head, code) in [
            (BARE_400.to_vec(), "bad_request"),
            (
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n".to_vec(),
                "request_timeout",
            ),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
                    .to_vec(),
                "header_too_large",
            ),
        ] {
            let rewrite = rewritten(&head).expect("rewritten");
            assert_eq!(rewrite.replaces, head.len());
            let text = String::from_utf8(rewrite.bytes).unwrap();
            let (new_head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(new_head.contains("content-type: application/json"));
            assert!(new_head.contains(&format!("content-length: {}", body.len())));
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["error"]["code"], code);
        }
    }

    #[test]
    fn other_answers_pass_untouched() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 60\r\n\r\n{\"error\":{}}",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-len",
            b"{\"payload\": \"HTTP/1.1 400 \\r\\ncontent-length: 0\\r\\n\\r\\n\"}",
        ] {
            assert!(
                rewritten(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn the_stream_carries_everything_else_and_the_rewrite() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut wrapped = JsonErrors::new(near);
        // A small pipe: the rewrite goes out over several partial writes.
        let writer = tokio::spawn(async move {
            wrapped.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            wrapped.write_all(BARE_400).await.unwrap();
            wrapped.shutdown().await.unwrap();
        });
        let mut received = String::new();
        far.read_to_string(&mut received).await.unwrap();
        writer.await.unwrap();
        let (first, second) = received.split_at("HTTP/1.1 200 OK\r\n\r\n".len());
        assert_eq!(first, "HTTP/1.1 200 OK\r\n\r\n");
        assert!(
            second.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{second}"
        );
        assert!(
            second.ends_with("\"message\":\"malformed HTTP request\"}}"),
            "{second}"
        );
    }
}
