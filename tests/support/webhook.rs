//! A webhook receiver for the notification tests: a local port that answers the first
//! request 503 and every other one 200, and records what drover posted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A webhook receiver on a local port: answers the first request 503 and every other one
/// 200, and records each request's path, event id header and JSON body.
pub struct Receiver {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Some((path, id, body)) = read_request(&mut conn) else {
                    continue;
                };
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((path, id, body));
                    seen.len() == 1
                };
                let status = if first {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        Receiver { port, requests }
    }

    /// The events taken (answered 200), in order: every request but the refused first.
    pub fn taken(&self) -> Vec<Value> {
        let all = self.requests.lock().unwrap();
        all.iter().skip(1).map(|(_, _, b)| b.clone()).collect()
    }

    /// `event node reason` of each node event taken.
    pub fn nodes(&self) -> Vec<String> {
        self.taken()
            .iter()
            .filter(|b| b["node"].is_string() && b["service"].is_null())
            .map(|b| {
                format!(
                    "{} {} {}",
                    b["event"].as_str().unwrap_or(""),
                    b["node"].as_str().unwrap_or(""),
                    b["reason"].as_str().unwrap_or("-")
                )
            })
            .collect()
    }

    /// `event service reason` of each event taken for `service`.
    pub fn said(&self, service: &str) -> Vec<String> {
        self.taken()
            .iter()
            .filter(|b| b["service"] == service)
            .map(|b| {
                format!(
                    "{} {}",
                    b["event"].as_str().unwrap_or(""),
                    b["reason"].as_str().unwrap_or("-")
                )
            })
            .collect()
    }
}

/// One request: its path, `x-drover-event-id` header and JSON body.
fn read_request(conn: &mut std::net::TcpStream) -> Option<(String, String, Value)> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut len, mut id) = (0, String::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "x-drover-event-id" => id = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((path, id, serde_json::from_slice(&body).ok()?))
}
