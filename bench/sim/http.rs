//! A minimal HTTP/1.1 server for the simulator: keep-alive connections, requests with a
//! `Content-Length` or chunked body, whole answers with a `Content-Length`, and streamed
//! answers (the event stream) as chunks. Enough for the Docker clients drover and the
//! benchmarks use; nothing else.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Largest request head or body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request: the method, the path with any `/vX.Y` prefix removed, the query, the body.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// A boolean query parameter as the engine reads it (`1`, `true`, `True`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("1" | "true" | "True" | "TRUE"))
    }
}

/// What a handler answers.
pub enum Reply {
    Full {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A stream of chunks; it ends when the sender is dropped.
    Stream {
        status: u16,
        chunks: mpsc::Receiver<Vec<u8>>,
    },
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::Full {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: format!("{value}\n").into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply::Full {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The engine's error body: `{"message": ...}`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "message": message }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Serve one connection until the client closes it.
pub async fn serve<S, H, F>(stream: S, handler: Arc<H>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: Fn(Request) -> F + Send + Sync,
    F: Future<Output = Reply> + Send,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    loop {
        let (req, keep_alive, head_only) = match read_request(&mut read).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let reply = handler(req).await;
        let ok = match reply {
            Reply::Full {
                status,
                content_type,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\nApi-Version: 1.41\r\nServer: drover-sim\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
                    reason(status),
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                if !head_only {
                    out.extend_from_slice(&body);
                }
                write.write_all(&out).await.is_ok()
            }
            Reply::Stream { status, mut chunks } => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nApi-Version: 1.41\r\nServer: drover-sim\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    reason(status)
                );
                if write.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let _ = write.flush().await;
                while let Some(chunk) = chunks.recv().await {
                    let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(b"\r\n");
                    if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
                        return;
                    }
                }
                let _ = write.write_all(b"0\r\n\r\n").await;
                let _ = write.flush().await;
                // A stream is the connection's last answer.
                return;
            }
        };
        if !ok || !keep_alive {
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// Read one request; `None` when the connection closed cleanly between requests.
async fn read_request<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
) -> std::io::Result<Option<(Request, bool, bool)>> {
    let mut line = String::new();
    if read.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut headers = HashMap::new();
    let mut head_len = line.len();
    loop {
        let mut h = String::new();
        if read.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        head_len += h.len();
        if head_len > MAX_BODY {
            return Err(std::io::Error::other("request head too large"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(read).await?
    } else {
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if len > MAX_BODY {
            return Err(std::io::Error::other("request body too large"));
        }
        let mut body = vec![0; len];
        read.read_exact(&mut body).await?;
        body
    };
    let connection = headers
        .get("connection")
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection == "keep-alive"
    } else {
        connection != "close"
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let req = Request {
        method: method.clone(),
        path: strip_version(&decode(path)),
        query: parse_query(query),
        body,
    };
    Ok(Some((req, keep_alive, method == "HEAD")))
}

async fn read_chunked<R: AsyncRead + Unpin>(read: &mut BufReader<R>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        read.read_line(&mut size).await?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(std::io::Error::other)?;
        if body.len() + n > MAX_BODY {
            return Err(std::io::Error::other("request body too large"));
        }
        let mut chunk = vec![0; n + 2];
        read.read_exact(&mut chunk).await?;
        chunk.truncate(n);
        body.extend_from_slice(&chunk);
        if n == 0 {
            return Ok(body);
        }
    }
}

/// `/v1.41/containers/json` -> `/containers/json`.
fn strip_version(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((v, tail)) = rest.split_once('/')
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return format!("/{tail}");
    }
    path.to_string()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding (and `+` as a space, as in forms).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_api_version_and_decodes() {
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/_ping"), "/_ping");
        assert_eq!(strip_version("/volumes/v1"), "/volumes/v1");
        assert_eq!(decode("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        let q = parse_query("all=1&filters=%7B%22label%22%3A%5B%22x%3Dy%22%5D%7D");
        assert_eq!(q["all"], "1");
        assert_eq!(q["filters"], "{\"label\":[\"x=y\"]}");
    }
}
