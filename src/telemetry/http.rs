//! The HTTP endpoints (`/livez`, `/readyz`, `/metrics`, `/status`) and the small client
//! `drover status` and `drover healthcheck` use.
//!
//! A minimal HTTP/1.1 responder on tokio rather than a server framework: four GET
//! routes, one request per connection (`Connection: close`), bounded request size,
//! read timeout and connection count. It keeps the static binary small and adds no
//! dependency.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::recorder::Telemetry;
use super::{metrics, status};

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// Largest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 32;
/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `--listen ADDR:PORT` or `--listen off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl Default for Listen {
    fn default() -> Self {
        Listen::At(DEFAULT_LISTEN.parse().expect("valid default address"))
    }
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse::<SocketAddr>().map(Listen::At).map_err(|_| {
            format!(
                "{s}: expected ADDR:PORT (e.g. 127.0.0.1:9477, 0.0.0.0:9477, [::1]:9477) or off"
            )
        })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(a) => write!(f, "{a}"),
        }
    }
}

impl Listen {
    /// Where a client on this host (or in this container) reaches the server: an
    /// unspecified address (`0.0.0.0`, `::`) is reached on loopback.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::At(a) => {
                let ip = match a.ip() {
                    IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                Some(SocketAddr::new(ip, a.port()))
            }
        }
    }
}

/// The `--listen` value of the drover that is PID 1 (the daemon of this container), when
/// given on its command line: `drover healthcheck` runs beside it with the container's
/// environment but not its arguments.
pub fn pid1_listen() -> Option<Listen> {
    let raw = std::fs::read("/proc/1/cmdline").ok()?;
    listen_from_cmdline(&raw)
}

fn listen_from_cmdline(raw: &[u8]) -> Option<Listen> {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = args.first()?;
    if exe.rsplit('/').next() != Some("drover") {
        return None;
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--listen" {
            return it.next()?.parse().ok();
        }
        if let Some(v) = a.strip_prefix("--listen=") {
            return v.parse().ok();
        }
    }
    None
}

/// Bind the listener (separate from [`serve`] so a bad address is reported at start-up).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, telemetry: Telemetry) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = handle(stream, &telemetry).await;
        });
    }
}

async fn handle(mut stream: tokio::net::TcpStream, telemetry: &Telemetry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(end);
            }
            if buf.len() > MAX_REQUEST {
                return None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let response = match head {
        Ok(Some(end)) => {
            let head = String::from_utf8_lossy(&buf[..end]);
            let line = head.lines().next().unwrap_or("");
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("");
            let target = parts.next().unwrap_or("");
            route(method, target, telemetry)
        }
        Ok(None) => Response::text(400, "Bad Request", "bad request\n"),
        Err(_) => Response::text(408, "Request Timeout", "request timeout\n"),
    };
    stream.write_all(&response.bytes()).await?;
    stream.shutdown().await
}

struct Response {
    code: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(code: u16, reason: &'static str, body: &str) -> Response {
        Response {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn route(method: &str, target: &str, telemetry: &Telemetry) -> Response {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(405, "Method Not Allowed", "only GET and HEAD\n");
    }
    let mut r = match path {
        "/livez" => Response::text(200, "OK", "ok\n"),
        "/readyz" => match telemetry.readiness() {
            Ok(()) => Response::text(200, "OK", "ok\n"),
            Err(why) => Response::text(503, "Service Unavailable", &(why.join("\n") + "\n")),
        },
        "/metrics" => Response {
            code: 200,
            reason: "OK",
            content_type: metrics::CONTENT_TYPE,
            body: metrics::render(telemetry),
            head_only: false,
        },
        "/status" => Response {
            code: 200,
            reason: "OK",
            content_type: "application/json",
            body: serde_json::to_string_pretty(&status::snapshot(telemetry))
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
                + "\n",
            head_only: false,
        },
        _ => Response::text(
            404,
            "Not Found",
            "not found: try /livez /readyz /metrics /status\n",
        ),
    };
    r.head_only = head_only;
    r
}

/// `GET path` on a drover's HTTP address: the status code and the body. Blocking, with
/// `timeout` for connecting and for each read and write.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        format!("cannot reach drover at {addr}: {e} (is `drover run` running, and is --listen the same?)")
    })?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: drover/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen::Off));
        assert_eq!(Listen::default().to_string(), "127.0.0.1:9477");
        assert!("9477".parse::<Listen>().is_err());
        let any: Listen = "0.0.0.0:9477".parse().unwrap();
        assert_eq!(any.client_addr(), Some("127.0.0.1:9477".parse().unwrap()));
        let v6: Listen = "[::]:1".parse().unwrap();
        assert_eq!(v6.client_addr(), Some("[::1]:1".parse().unwrap()));
    }

    #[test]
    fn finds_listen_on_a_drover_command_line() {
        let raw = b"/drover\0run\0--listen\x000.0.0.0:9000\0-f\0x\0";
        assert_eq!(
            listen_from_cmdline(raw),
            Some(Listen::At("0.0.0.0:9000".parse().unwrap()))
        );
        assert_eq!(
            listen_from_cmdline(b"drover\0--listen=off\0run\0"),
            Some(Listen::Off)
        );
        assert_eq!(listen_from_cmdline(b"/sbin/init\0--listen\0x:1\0"), None);
        assert_eq!(listen_from_cmdline(b"/drover\0run\0"), None);
    }

    #[tokio::test]
    async fn serves_the_four_paths() {
        let t = Telemetry::new("p", Duration::from_secs(60), None);
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, t.clone()));
        let got = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(5);
            [
                get(addr, "/livez", timeout).unwrap(),
                get(addr, "/readyz", timeout).unwrap(),
                get(addr, "/metrics?x=1", timeout).unwrap(),
                get(addr, "/status", timeout).unwrap(),
                get(addr, "/nope", timeout).unwrap(),
            ]
        })
        .await
        .unwrap();
        server.abort();
        assert_eq!(got[0], (200, "ok\n".to_string()));
        assert_eq!(got[1].0, 503);
        assert!(got[1].1.contains("no engine configured"), "{}", got[1].1);
        assert_eq!(got[2].0, 200);
        assert!(got[2].1.contains("drover_ready{project=\"p\"} 0"));
        let s: status::Status = serde_json::from_str(&got[3].1).unwrap();
        assert_eq!(s.project, "p");
        assert_eq!(got[4].0, 404);
    }
}
