//! A test WebSocket peer and fixtures.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use has_crypto::{KeyRole, PrivateKey, PublicKey, SharedSecretCache, memo::pok};
use has_relay::{AccountSource, RelayConfig, RelayHandle};
use hive_chain::accounts::Account;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Peer {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Peer {
    pub async fn connect(url: &str) -> Peer {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut p = Peer { ws };
        let hello = p.recv().await;
        assert_eq!(hello["cmd"], "connected");
        p
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (5 s at most).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(5))
            .await
            .expect("a frame within 5 s")
    }

    /// The next JSON frame within `d`, or None (timeout or close).
    pub async fn try_recv(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a frame with `cmd` arrives (other frames are returned too, in order).
    pub async fn recv_cmd(&mut self, cmd: &str) -> Value {
        loop {
            let f = self.recv().await;
            if f["cmd"] == cmd {
                return f;
            }
        }
    }

    /// Asserts nothing arrives for `d` (used only where silence is the expected behaviour).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.try_recv(d).await {
            panic!("expected silence, got {f}");
        }
    }
}

pub struct TestAccount {
    pub name: String,
    pub keys: [PrivateKey; 4],
}

impl TestAccount {
    pub fn new(name: &str) -> Self {
        TestAccount {
            name: name.into(),
            keys: KeyRole::ALL.map(|r| PrivateKey::from_login(name, "relay-test", r).unwrap()),
        }
    }
    pub fn memo(&self) -> &PrivateKey {
        &self.keys[0]
    }
    pub fn account(&self) -> Account {
        let [m, p, a, o] = &self.keys;
        Account::with_keys(
            &self.name,
            *o.public_key(),
            *a.public_key(),
            *p.public_key(),
            *m.public_key(),
        )
    }
    pub fn pok(&self, server: &PublicKey, value: &str) -> String {
        pok::encode(
            &SharedSecretCache::default().channel(self.memo(), server),
            value,
        )
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub struct Fixture {
    pub relay: RelayHandle,
    pub _dir: tempfile::TempDir,
}

pub async fn relay_with(
    accounts: &[&TestAccount],
    tweak: impl FnOnce(&mut RelayConfig),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts.json");
    let list: Vec<Account> = accounts.iter().map(|a| a.account()).collect();
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    let mut config = RelayConfig::new(dir.path().join("relay.key"), AccountSource::File(file));
    tweak(&mut config);
    let relay = has_relay::spawn("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    Fixture { relay, _dir: dir }
}

/// A PKSA socket registered for `acct` (protocol 1 POK).
pub async fn pksa(url: &str, server: &PublicKey, acct: &TestAccount) -> Peer {
    let mut p = Peer::connect(url).await;
    p.send(json!({"cmd": "key_req"})).await;
    let ack = p.recv_cmd("key_ack").await;
    assert_eq!(ack["key"], server.to_string());
    p.send(json!({"cmd": "register_req", "app": "test-pksa", "accounts": [{"name": acct.name, "pok": acct.pok(server, &now_ms().to_string())}]})).await;
    let r = p.recv_cmd("register_ack").await;
    assert_eq!(r["account"], acct.name);
    p
}

pub const DATA: &str = "U2FsdGVkX18BAgMEBQYHCDvftjHluU7Q6gqbBOS5TwcQymcx+tfGNz5Zm1GTP+3T";

/// A plain HTTP GET on the metrics address, the whole response (status line, headers,
/// body). The address opens with the relay's task: this waits for it.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(addr).await {
            break s;
        }
        tokio::task::yield_now().await;
    };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
