//! A fault-injecting proxy between drover and an engine's unix socket, listening on plain
//! TCP on loopback (point drover at it with `DOCKER_HOST=tcp://127.0.0.1:PORT`).
//!
//! Faults, switched at any time from the test:
//! - [`Proxy::cut_events`]: close the connections carrying the event stream, nothing else;
//! - [`Proxy::silence_events`]: keep the event-stream connections open but forward nothing
//!   more on them (a stream that goes silent, as behind a proxy that lost its upstream);
//! - [`Mode::Error500`]: answer every request with `500 Internal Server Error`;
//! - [`Mode::Stall`]: accept connections and requests, answer nothing (timeouts);
//! - [`Mode::Refuse`]: accept and close at once;
//! - [`Proxy::drop_all`]: close every open connection.
//!
//! Switching the mode closes the open connections, so pooled keep-alive connections meet
//! the new mode at their next request.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Error500,
    Stall,
    Refuse,
}

struct Conn {
    id: u64,
    client: TcpStream,
    events: Arc<AtomicBool>,
    silenced: Arc<AtomicBool>,
}

struct Shared {
    mode: Mutex<Mode>,
    conns: Mutex<Vec<Conn>>,
    next: AtomicU64,
    upstream: PathBuf,
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Proxy `127.0.0.1:<free port>` to the unix socket at `upstream`.
    pub fn start(upstream: impl Into<PathBuf>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            conns: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            upstream: upstream.into(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(s, client));
            }
        });
        Proxy { port, shared, stop }
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        self.drop_all();
    }

    /// Close every open connection.
    pub fn drop_all(&self) {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.client.shutdown(Shutdown::Both);
        }
    }

    /// Close the connections that carry an event stream; returns how many.
    pub fn cut_events(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        let mut cut = 0;
        conns.retain(|c| {
            if c.events.load(Ordering::SeqCst) {
                let _ = c.client.shutdown(Shutdown::Both);
                cut += 1;
                false
            } else {
                true
            }
        });
        cut
    }

    /// Stop forwarding anything on the open event-stream connections, leaving them open;
    /// returns how many. New connections are not affected.
    pub fn silence_events(&self) -> usize {
        let conns = self.shared.conns.lock().unwrap();
        let mut n = 0;
        for c in conns.iter().filter(|c| c.events.load(Ordering::SeqCst)) {
            c.silenced.store(true, Ordering::SeqCst);
            n += 1;
        }
        n
    }

    /// Event-stream connections open now.
    pub fn event_streams(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.events.load(Ordering::SeqCst) && !c.silenced.load(Ordering::SeqCst))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.drop_all();
    }
}

fn serve(shared: Arc<Shared>, client: TcpStream) {
    let mode = *shared.mode.lock().unwrap();
    match mode {
        Mode::Refuse => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Mode::Stall => {
            register(&shared, &client);
            // Read and discard until the client gives up or the mode changes.
            let mut c = client;
            let mut buf = [0u8; 4096];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        Mode::Error500 => {
            register(&shared, &client);
            answer_500(client);
        }
        Mode::Pass => {
            let Ok(upstream) = UnixStream::connect(&shared.upstream) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            let (events, silenced) = register(&shared, &client);
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            // client -> engine, noting requests for the event stream.
            let ev = events.clone();
            std::thread::spawn(move || {
                pump(c2, u2, |chunk| {
                    let text = String::from_utf8_lossy(chunk);
                    if text.contains("/events?") || text.contains("/events ") {
                        ev.store(true, Ordering::SeqCst);
                    }
                    true
                })
            });
            // engine -> client, unless silenced.
            pump(upstream, client, move |_| !silenced.load(Ordering::SeqCst));
        }
    }
}

fn register(shared: &Shared, client: &TcpStream) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let events = Arc::new(AtomicBool::new(false));
    let silenced = Arc::new(AtomicBool::new(false));
    let conn = Conn {
        id: shared.next.fetch_add(1, Ordering::SeqCst),
        client: client.try_clone().unwrap(),
        events: events.clone(),
        silenced: silenced.clone(),
    };
    shared.conns.lock().unwrap().push(conn);
    (events, silenced)
}

/// Copy `from` to `to` while `forward(chunk)` allows; a refused chunk is swallowed (the
/// connection stays open, silent). Closing either end ends both.
fn pump<R: Read + TryShut, W: Write + TryShut>(
    mut from: R,
    mut to: W,
    mut forward: impl FnMut(&[u8]) -> bool,
) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if forward(&buf[..n]) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    from.shut();
    to.shut();
}

trait TryShut {
    fn shut(&self);
}

impl TryShut for TcpStream {
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl TryShut for UnixStream {
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// Answer each request on the connection with a 500, reading (and discarding) its headers
/// and body.
fn answer_500(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = find(&pending, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if pending.len() < end + 4 + body_len {
                break;
            }
            pending.drain(..end + 4 + body_len);
            let body = b"{\"message\":\"injected fault: internal server error\"}";
            let resp = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if c.write_all(resp.as_bytes()).is_err() || c.write_all(body).is_err() {
                return;
            }
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
