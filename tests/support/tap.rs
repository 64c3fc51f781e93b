//! A recording TCP relay in front of the simulator: every byte a worker sends and receives passes
//! through unchanged (a dropped connection stays dropped), and is kept so a test can learn which
//! codes this worker presented at the token endpoint, which api keys it sent, and every token the
//! simulator issued to it. One tap per worker instance attributes requests to that instance.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The bytes of one relayed connection, both ways.
#[derive(Default)]
struct Conn {
    sent: Mutex<Vec<u8>>,
    received: Mutex<Vec<u8>>,
}

/// A running relay; dropping it stops accepting.
pub struct HttpTap {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    accept: JoinHandle<()>,
}

impl Drop for HttpTap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl HttpTap {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> HttpTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let all = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                let conn = Arc::new(Conn::default());
                all.lock().unwrap().push(conn.clone());
                let (down_r, down_w) = down.into_split();
                let (up_r, up_w) = up.into_split();
                tokio::spawn(pipe(down_r, up_w, conn.clone(), true));
                tokio::spawn(pipe(up_r, down_w, conn, false));
            }
        });
        HttpTap {
            addr,
            conns,
            accept,
        }
    }

    /// The API base URL through this tap.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, silentauth_simulator::PATH_PREFIX)
    }

    fn texts(&self, sent: bool) -> Vec<String> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                let b = if sent { &c.sent } else { &c.received };
                String::from_utf8_lossy(&b.lock().unwrap()).into_owned()
            })
            .collect()
    }

    /// How many token requests presented each code.
    pub fn codes_presented(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for text in self.texts(true) {
            for code in values_after(&text, "grant_type=authorization_code&code=", &['&', '\r']) {
                *out.entry(code).or_insert(0) += 1;
            }
        }
        out
    }

    /// Every `apiKey` header value sent.
    pub fn api_keys_sent(&self) -> Vec<String> {
        let mut out = Vec::new();
        for text in self.texts(true) {
            out.extend(values_after(&text, "apikey: ", &['\r']));
        }
        out
    }

    /// Every access, refresh and id token the simulator answered through this tap.
    pub fn tokens_issued(&self) -> Vec<String> {
        let mut out = Vec::new();
        for text in self.texts(false) {
            for field in [
                "\"access_token\":\"",
                "\"refresh_token\":\"",
                "\"id_token\":\"",
            ] {
                out.extend(values_after(&text, field, &['"']));
            }
        }
        out
    }
}

/// The text after each occurrence of `marker`, up to the first of `ends` (or the end).
fn values_after(text: &str, marker: &str, ends: &[char]) -> Vec<String> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let end = rest.find(|c| ends.contains(&c)).unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: Arc<Conn>,
    sent: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let log = if sent { &conn.sent } else { &conn.received };
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}
