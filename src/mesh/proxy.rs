//! `drover ambassador`: the forwarding process. It listens on the ports of its routes,
//! forwards each TCP connection to the first backend that accepts it (its own node's
//! replicas first, in turn; then the other nodes', in turn; a refusal moves on at once)
//! and each UDP flow likewise, and takes new routes from `drover ambassador --push`
//! without restarting: listeners come and go with their routes, and connections already
//! open stay open whatever the new routes say.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Proto, Route, Routes};

/// The abstract socket the serving process takes routes on: abstract sockets belong to
/// the network namespace, so only processes inside the ambassador's container reach it.
const CONTROL: &[u8] = b"drover-ambassador-control";

/// How long a backend may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A UDP flow with no datagram either way for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);

fn control_addr() -> std::io::Result<std::os::unix::net::SocketAddr> {
    std::os::unix::net::SocketAddr::from_abstract_name(CONTROL)
}

/// Hand `json` (a [`Routes`]) to the ambassador serving in this container; the answer is
/// its verdict.
pub fn push(json: &str) -> Result<(), String> {
    let routes: Routes = serde_json::from_str(json).map_err(|e| format!("bad routes: {e}"))?;
    match ask(&serde_json::to_vec(&routes).unwrap_or_default())?.trim() {
        "ok" => Ok(()),
        other => Err(other.to_string()),
    }
}

/// The routes (JSON) the ambassador serving in this container has: asked with an empty
/// message.
pub fn show() -> Result<String, String> {
    let answer = ask(&[])?;
    serde_json::from_str::<Routes>(&answer).map_err(|_| answer.trim().to_string())?;
    Ok(answer)
}

/// Send `message` on the control socket and read the answer.
fn ask(message: &[u8]) -> Result<String, String> {
    let addr = control_addr().map_err(|e| e.to_string())?;
    let mut s = std::os::unix::net::UnixStream::connect_addr(&addr)
        .map_err(|e| format!("no ambassador answers in this container: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(message)
        .and_then(|()| s.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("cannot talk to the ambassador: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("no answer from the ambassador: {e}"))?;
    Ok(answer)
}

/// Serve until the process is stopped.
pub async fn serve() -> Result<(), String> {
    let addr = control_addr().map_err(|e| e.to_string())?;
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .map_err(|e| format!("cannot take the control socket: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let control = tokio::net::UnixListener::from_std(std_listener).map_err(|e| e.to_string())?;
    let (tx, rx) = watch::channel(Arc::new(Routes::default()));
    let mut listeners = Listeners::default();
    info!(action = "ambassador", "ambassador waiting for its routes");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    loop {
        let accepted = tokio::select! {
            a = control.accept() => a,
            _ = term.recv() => return Ok(()),
        };
        let (mut conn, _) = accepted.map_err(|e| format!("control socket: {e}"))?;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
        let answer = match read {
            Ok(Ok(0)) => serde_json::to_string(&**rx.borrow()).unwrap_or_default(),
            Ok(Ok(_)) => match serde_json::from_slice::<Routes>(&buf) {
                Ok(routes) => {
                    let routes = Arc::new(routes);
                    let failed = listeners.apply(&routes, &rx).await;
                    tx.send_replace(routes.clone());
                    info!(
                        action = "ambassador",
                        routes = routes.routes.len(),
                        backends = routes.backends(),
                        "routes updated"
                    );
                    if failed.is_empty() {
                        "ok".to_string()
                    } else {
                        failed.join("; ")
                    }
                }
                Err(e) => format!("bad routes: {e}"),
            },
            Ok(Err(e)) => format!("cannot read the routes: {e}"),
            Err(_) => "the routes took too long to arrive".to_string(),
        };
        let _ = conn.write_all(answer.as_bytes()).await;
    }
}

/// The accept loop of each route's port.
#[derive(Default)]
struct Listeners {
    running: HashMap<(Proto, u16), JoinHandle<()>>,
}

impl Listeners {
    /// Listen on the ports `routes` has and no longer on those it lacks; what could not be
    /// bound, one line each.
    async fn apply(&mut self, routes: &Routes, rx: &watch::Receiver<Arc<Routes>>) -> Vec<String> {
        let wanted: Vec<(Proto, u16)> = routes.routes.iter().map(|r| (r.proto, r.port)).collect();
        self.running.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let mut failed = Vec::new();
        for key in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let bind: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, key.1).into();
            let task = match key.0 {
                Proto::Tcp => TcpListener::bind(bind)
                    .await
                    .map(|l| tokio::spawn(accept_tcp(l, key, rx.clone()))),
                Proto::Udp => UdpSocket::bind(bind)
                    .await
                    .map(|s| tokio::spawn(relay_udp(Arc::new(s), key, rx.clone()))),
            };
            match task {
                Ok(t) => {
                    self.running.insert(key, t);
                }
                Err(e) => failed.push(format!(
                    "cannot listen on {}/{}: {e}",
                    key.1,
                    key.0.as_str()
                )),
            }
        }
        failed
    }
}

/// The backends of the route on `key`, in the order to try them: local ones first, then
/// remote ones, each list rotated by `turn` so that successive connections spread.
fn candidates(routes: &Routes, key: (Proto, u16), turn: usize) -> Vec<SocketAddr> {
    let Some(route) = routes.routes.iter().find(|r| (r.proto, r.port) == key) else {
        return Vec::new();
    };
    let mut out = rotated(&route.local, turn);
    out.extend(rotated(&route.remote, turn));
    out
}

fn rotated(list: &[SocketAddr], turn: usize) -> Vec<SocketAddr> {
    if list.is_empty() {
        return Vec::new();
    }
    let k = turn % list.len();
    list[k..].iter().chain(&list[..k]).copied().collect()
}

fn route_name(routes: &Routes, key: (Proto, u16)) -> String {
    routes
        .routes
        .iter()
        .find(|r: &&Route| (r.proto, r.port) == key)
        .map_or_else(String::new, |r| r.service.clone())
}

async fn accept_tcp(listener: TcpListener, key: (Proto, u16), rx: watch::Receiver<Arc<Routes>>) {
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let routes = rx.borrow().clone();
        let order = candidates(&routes, key, turn.fetch_add(1, Ordering::Relaxed));
        let service = route_name(&routes, key);
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            for backend in order {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
                    Ok(Ok(upstream)) => {
                        let _ = upstream.set_nodelay(true);
                        let (mut a, mut b) = (client, upstream);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        warn!(action = "ambassador", service = %service, backend = %backend, error = %e, "backend refused; trying the next")
                    }
                    Err(_) => {
                        warn!(action = "ambassador", service = %service, backend = %backend, "backend did not accept in time; trying the next")
                    }
                }
            }
            warn!(action = "ambassador", service = %service, port = key.1, "no backend accepted the connection");
        });
    }
}

/// One UDP flow per client address: a socket connected to one backend, its replies sent
/// back from the listening socket.
async fn relay_udp(socket: Arc<UdpSocket>, key: (Proto, u16), rx: watch::Receiver<Arc<Routes>>) {
    let flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut turn = 0usize;
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = flows.lock().await.get(&client).cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                turn += 1;
                let order = candidates(&rx.borrow().clone(), key, turn);
                let Some(u) = open_udp(&order).await else {
                    continue;
                };
                let u = Arc::new(u);
                flows.lock().await.insert(client, u.clone());
                tokio::spawn(udp_replies(
                    socket.clone(),
                    u.clone(),
                    client,
                    flows.clone(),
                ));
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// A socket connected to the first backend of `order` that can be addressed.
async fn open_udp(order: &[SocketAddr]) -> Option<UdpSocket> {
    for backend in order {
        let bind: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
        if let Ok(s) = UdpSocket::bind(bind).await
            && s.connect(backend).await.is_ok()
        {
            return Some(s);
        }
    }
    None
}

async fn udp_replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
    flows.lock().await.remove(&client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_backends_come_first_and_each_list_takes_turns() {
        let a: SocketAddr = "172.18.0.5:5432".parse().unwrap();
        let b: SocketAddr = "10.231.2.2:32768".parse().unwrap();
        let c: SocketAddr = "10.231.3.2:32769".parse().unwrap();
        let routes = Routes::new(vec![Route {
            service: "db".into(),
            proto: Proto::Tcp,
            port: 5432,
            local: vec![a],
            remote: vec![b, c],
        }]);
        let key = (Proto::Tcp, 5432);
        assert_eq!(candidates(&routes, key, 0), vec![a, b, c]);
        assert_eq!(candidates(&routes, key, 1), vec![a, c, b]);
        assert!(candidates(&routes, (Proto::Udp, 5432), 0).is_empty());
    }

    #[tokio::test]
    async fn a_refusing_backend_is_skipped_and_routes_change_without_a_restart() {
        // A backend that answers with its name.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = server.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = server.accept().await.unwrap();
                let _ = s.write_all(b"db").await;
            }
        });
        // A port nothing listens on: refused.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = dead.local_addr().unwrap();
        drop(dead);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = front.local_addr().unwrap().port();
        let key = (Proto::Tcp, port);
        let route = |local: Vec<SocketAddr>, remote: Vec<SocketAddr>| {
            Arc::new(Routes::new(vec![Route {
                service: "db".into(),
                proto: Proto::Tcp,
                port,
                local,
                remote,
            }]))
        };
        let (tx, rx) = watch::channel(route(vec![refused], vec![up]));
        tokio::spawn(accept_tcp(front, key, rx));
        let ask = || async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        assert_eq!(ask().await, "db");
        tx.send_replace(route(vec![], vec![]));
        assert_eq!(ask().await, "", "no backend: the connection is closed");
        tx.send_replace(route(vec![up], vec![]));
        assert_eq!(ask().await, "db");
    }

    #[tokio::test]
    async fn a_udp_flow_is_relayed_both_ways() {
        // A backend that answers each datagram with "pong: " and the datagram.
        let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up = backend.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = backend.recv_from(&mut buf).await.unwrap();
                let reply = [b"pong: ", &buf[..n]].concat();
                backend.send_to(&reply, from).await.unwrap();
            }
        });
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let port = front.local_addr().unwrap().port();
        let key = (Proto::Udp, port);
        let routes = Routes::new(vec![Route {
            service: "dns".into(),
            proto: Proto::Udp,
            port,
            local: vec![],
            remote: vec![up],
        }]);
        let (_tx, rx) = watch::channel(Arc::new(routes));
        tokio::spawn(relay_udp(front, key, rx));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(("127.0.0.1", port)).await.unwrap();
        for word in ["one", "two"] {
            client.send(word.as_bytes()).await.unwrap();
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], format!("pong: {word}").as_bytes());
        }
    }
}
