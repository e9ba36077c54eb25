//! The test environment: relay + dry-run node + service (+ fake relays for re-delivery).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use has_client::{AuthMode, HasClient, Session};
use has_crypto::{KeyRole, PrivateKey, SharedSecretCache, memo::pok};
use has_protocol::payloads::AppInfo;
use has_protocol::{AuthKey, AuthReqSecret, frame};
use hive_chain::ChainId;
use hive_chain::accounts::Account;
use hive_chain::dryrun::{self, DryRunNode};
use pksa_service::Settings;
use pksa_service::daemon::{self, Service};
use pksa_service::keystore::KeyStore;
use pksa_service::policy::PolicyConfig;
use pksa_service::state::{self, Sealer, Store, enrollments, now_ms};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

pub struct TestAccount {
    pub name: String,
    pub keys: [PrivateKey; 4],
}

impl TestAccount {
    pub fn new(name: &str) -> Self {
        TestAccount {
            name: name.into(),
            keys: KeyRole::ALL.map(|r| PrivateKey::from_login(name, "e2e-password", r).unwrap()),
        }
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
}

pub fn default_settings(secret: &AuthReqSecret) -> Settings {
    Settings {
        auth_req_secret: Some(secret.clone()),
        session_lifetime: Duration::from_secs(3600),
        session_max_lifetime: Duration::from_secs(7200),
        auth_req_reject: true,
        sign_req_reject: true,
        challenge_req_reject: true,
        challenge_decrypt: false,
        challenge_nonce_required: false,
        expiration: Duration::from_secs(60),
        log_payloads: false,
        answer_retention: Duration::from_secs(86_400),
        audit_retention: None,
        policy: PolicyConfig::default(),
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub alice: TestAccount,
    pub secret: AuthReqSecret,
    pub node: Arc<DryRunNode>,
    pub node_url: String,
    pub relay_url: String,
    pub relay: Option<has_relay::RelayHandle>,
    pub relay_addr: SocketAddr,
    pub svc: Arc<Service>,
    pub stop: watch::Sender<bool>,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A change to the relay's configuration.
pub type RelayTweak = Box<dyn FnOnce(&mut has_relay::RelayConfig) + Send>;

pub struct Builder {
    pub settings: Option<Settings>,
    pub relay_timeout: Duration,
    pub extra_servers: Vec<String>,
    pub keystore_accounts: Vec<(String, Vec<KeyRole>)>,
    pub enroll: bool,
    pub dir: Option<tempfile::TempDir>,
    /// The chain the service signs for and the dry-run node checks.
    pub chain: ChainId,
    /// Hive API URL given to the service instead of the dry-run node's.
    pub hive_api: Option<String>,
    /// The relay's configuration: limits raised out of the way unless set.
    pub relay_config: Option<RelayTweak>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            settings: None,
            relay_timeout: Duration::from_secs(10),
            extra_servers: vec![],
            keystore_accounts: vec![(
                "alice".into(),
                vec![KeyRole::Memo, KeyRole::Posting, KeyRole::Active],
            )],
            enroll: true,
            dir: None,
            chain: ChainId::MAINNET,
            hive_api: None,
            relay_config: None,
        }
    }
}

pub async fn relay_on(
    addr: SocketAddr,
    dir: &std::path::Path,
    accounts: &[Account],
    timeout: Duration,
) -> has_relay::RelayHandle {
    relay_with(addr, dir, accounts, timeout, raise_limits).await
}

/// Limits out of the way of load tests.
pub fn raise_limits(c: &mut has_relay::RelayConfig) {
    c.frames_per_second = 100_000;
    c.max_pending_per_account = 100_000;
    c.max_pending_per_socket = 100_000;
    c.max_pending_per_ip = 100_000;
}

/// A relay with its default configuration changed by `tweak`.
pub async fn relay_with(
    addr: SocketAddr,
    dir: &std::path::Path,
    accounts: &[Account],
    timeout: Duration,
    tweak: impl FnOnce(&mut has_relay::RelayConfig),
) -> has_relay::RelayHandle {
    let file = dir.join("relay-accounts.json");
    std::fs::write(&file, serde_json::to_string(accounts).unwrap()).unwrap();
    let mut c =
        has_relay::RelayConfig::new(dir.join("relay.key"), has_relay::AccountSource::File(file));
    c.timeout = timeout;
    tweak(&mut c);
    has_relay::spawn(addr, c).await.unwrap()
}

impl Builder {
    pub async fn start(self) -> Env {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let alice = TestAccount::new("alice");
        let bob = TestAccount::new("bob");
        let carol = TestAccount::new("carol");
        let node = DryRunNode::new(
            self.chain,
            vec![alice.account(), bob.account(), carol.account()],
        );
        let (node_url, _) = dryrun::spawn(node.clone(), 0).await.unwrap();
        let relay = relay_with(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            &[alice.account(), bob.account(), carol.account()],
            self.relay_timeout,
            self.relay_config.unwrap_or(Box::new(raise_limits)),
        )
        .await;
        let secret = AuthReqSecret::new("e2e-secret-0123456789abcdef");
        let svc = build_service_on(
            dir.path(),
            &alice,
            &self.keystore_accounts,
            self.hive_api.as_deref().unwrap_or(&node_url),
            &relay.url,
            &self.extra_servers,
            self.settings.unwrap_or_else(|| default_settings(&secret)),
            self.chain,
        )
        .await;
        if self.enroll {
            svc.store
                .call(|c| enrollments::open(c, "alice", None, now_ms() + 600_000, None))
                .await
                .unwrap();
        }
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(daemon::run(svc.clone(), None, rx));
        let env = Env {
            relay_addr: relay.addr,
            relay_url: relay.url.clone(),
            relay: Some(relay),
            dir,
            alice,
            secret,
            node,
            node_url,
            svc,
            stop,
            task: Some(task),
        };
        env.wait_registered(0).await;
        env
    }
}

pub async fn build_service(
    dir: &std::path::Path,
    alice: &TestAccount,
    accounts: &[(String, Vec<KeyRole>)],
    node_url: &str,
    relay_url: &str,
    extra: &[String],
    settings: Settings,
) -> Arc<Service> {
    build_service_on(
        dir,
        alice,
        accounts,
        node_url,
        relay_url,
        extra,
        settings,
        ChainId::MAINNET,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub async fn build_service_on(
    dir: &std::path::Path,
    alice: &TestAccount,
    accounts: &[(String, Vec<KeyRole>)],
    node_url: &str,
    relay_url: &str,
    extra: &[String],
    settings: Settings,
    chain: ChainId,
) -> Arc<Service> {
    let mut ks = KeyStore::new();
    for (name, roles) in accounts {
        let acct = if name == "alice" {
            &alice.keys
        } else {
            &TestAccount::new(name).keys
        };
        for r in roles {
            let idx = KeyRole::ALL.iter().position(|x| x == r).unwrap();
            ks.add(name, *r, acct[idx].clone()).unwrap();
        }
    }
    // A stable state key across restarts of the same directory.
    let sk_path = dir.join("state.key");
    let state_key = match std::fs::read(&sk_path) {
        Ok(b) => has_crypto::SecretBytes::new(b),
        Err(_) => {
            std::fs::write(&sk_path, ks.state_key().expose_secret()).unwrap();
            ks.state_key().clone()
        }
    };
    let store = Store::open(
        &dir.join("state.sqlite"),
        Sealer::new(state_key),
        state::Sync::Normal,
    )
    .unwrap();
    let rpc = daemon::rpc_client(vec![node_url.to_owned()]).unwrap();
    let mut servers = vec![relay_url.to_owned()];
    servers.extend(extra.iter().cloned());
    Service::new("e2e-pksa".into(), ks, store, rpc, chain, settings, &servers)
}

/// A client of the relay at `relay_url` that verifies against the node at `node_url`.
pub async fn client_for(relay_url: &str, node_url: &str) -> HasClient {
    HasClient::connect(relay_url)
        .await
        .unwrap()
        .with_chain(daemon::rpc_client(vec![node_url.to_owned()]).unwrap())
}

impl Env {
    /// Waits until server `i` registered at least one account (readiness, not a sleep).
    pub async fn wait_registered(&self, i: usize) {
        let status = self.svc.servers[i].1.clone();
        tokio::time::timeout(Duration::from_secs(20), async {
            while status.registered.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the service registers on the relay");
    }

    pub async fn client(&self) -> HasClient {
        client_for(&self.relay_url, &self.node_url).await
    }

    pub fn app(name: &str) -> AppInfo {
        AppInfo {
            name: name.into(),
            description: None,
            icon: None,
            pubkey: None,
        }
    }

    pub async fn auth(&self, client: &HasClient, app: &str) -> Session {
        client
            .authenticate(
                "alice",
                Env::app(app),
                None,
                AuthMode::ServiceSecret(self.secret.clone()),
            )
            .await
            .unwrap()
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(r) = self.relay.take() {
            let _ = r.shutdown().await;
        }
        self.dir
    }
}

pub fn vote(voter: &str, permlink: &str) -> Value {
    json!(["vote", {"voter": voter, "author": "bob", "permlink": permlink, "weight": 10000}])
}

/// A hand-driven relay: accepts the service's socket, does the handshake, then lets the test
/// send relayed requests and read the replies.
pub struct FakeRelay {
    pub url: String,
    pub server_key: PrivateKey,
    listener: TcpListener,
}

pub struct FakeConn {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    pub server_key: PrivateKey,
    pub registered: Vec<String>,
}

impl FakeRelay {
    pub async fn bind() -> FakeRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        FakeRelay {
            url,
            server_key: PrivateKey::generate(),
            listener,
        }
    }

    /// Accepts the service and completes connected → key_req/key_ack → register_req(s).
    pub async fn accept(&self, protocol: f64, accounts: usize) -> FakeConn {
        let (s, _) = self.listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        ws.send(Message::Text(json!({"cmd": "connected", "server": "fake", "socketid": "x", "timeout": 60, "ping_rate": 30, "version": "test", "protocol": protocol}).to_string().into())).await.unwrap();
        let mut conn = FakeConn {
            ws,
            server_key: self.server_key.clone(),
            registered: vec![],
        };
        if protocol > 1.0 {
            return conn;
        }
        let req = conn.recv().await.unwrap();
        assert_eq!(req["cmd"], "key_req");
        conn.send(json!({"cmd": "key_ack", "key": self.server_key.public_key().to_string()}))
            .await;
        let cache = SharedSecretCache::default();
        while conn.registered.len() < accounts {
            let r = conn.recv().await.unwrap();
            assert_eq!(r["cmd"], "register_req", "{r}");
            for a in r["accounts"].as_array().unwrap() {
                let proof =
                    pok::decode(&self.server_key, &cache, a["pok"].as_str().unwrap()).unwrap();
                let t: i64 = proof.value.parse().unwrap();
                assert!((t - now_ms()).abs() < 10_000);
                let name = a["name"].as_str().unwrap().to_owned();
                conn.send(json!({"cmd": "register_ack", "account": name}))
                    .await;
                conn.registered.push(name);
            }
        }
        conn
    }
}

impl FakeConn {
    pub async fn send_raw(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Next text frame within 10 s (None on close or timeout).
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(Duration::from_secs(10)).await
    }

    pub async fn recv_within(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                _ => continue,
            }
        }
    }

    /// Checks a reply's pok decodes to its uuid from one of `acct`'s keys.
    pub fn check_pok(&self, reply: &Value, acct: &TestAccount) {
        let uuid = reply["uuid"].as_str().unwrap();
        let proof = pok::decode(
            &self.server_key,
            &SharedSecretCache::default(),
            reply["pok"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(proof.value, uuid);
        assert_eq!(
            proof.from,
            *acct.keys[0].public_key(),
            "POK from the memo key (the lowest)"
        );
    }
}

pub fn encode<T: frame::Direction>(f: &T) -> Value {
    serde_json::from_str(&frame::encode(f).unwrap()).unwrap()
}

/// The store as another process (the CLI) sees it: a second connection to the same file.
pub fn cli_store(dir: &std::path::Path) -> Store {
    let key = has_crypto::SecretBytes::new(std::fs::read(dir.join("state.key")).unwrap());
    Store::open(
        &dir.join("state.sqlite"),
        Sealer::new(key),
        state::Sync::Normal,
    )
    .unwrap()
}

/// `pksa-service session create`, from another process.
pub async fn create_session(
    dir: &std::path::Path,
    account: &str,
    app: &str,
    key: &has_protocol::AuthKey,
    expire: i64,
) -> i64 {
    let s = cli_store(dir);
    let (a, b, k, sealer) = (
        account.to_owned(),
        app.to_owned(),
        key.clone(),
        s.sealer().clone(),
    );
    s.call(move |c| {
        pksa_service::state::sessions::insert(c, &sealer, &operator_session(&a, &b, &k, expire))
    })
    .await
    .unwrap()
}

/// An app speaking raw frames to the relay (to send what has-client never would).
pub struct RawApp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Replies that arrived while waiting for something else.
    early: Vec<Value>,
}

impl RawApp {
    pub async fn connect(url: &str) -> RawApp {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("connected"));
        RawApp { ws, early: vec![] }
    }

    /// Sends a request and returns the uuid of its `*_wait`.
    pub async fn request(&mut self, frame: Value) -> String {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        loop {
            let v = self.next(Duration::from_secs(10)).await.expect("a *_wait");
            if v["cmd"].as_str().unwrap_or("").ends_with("_wait") {
                return v["uuid"].as_str().unwrap().to_owned();
            }
            self.early.push(v);
        }
    }

    async fn next(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The reply to `uuid` if one arrives within `d`.
    pub async fn reply(&mut self, uuid: &str, d: Duration) -> Option<Value> {
        if let Some(i) = self.early.iter().position(|v| v["uuid"] == uuid) {
            return Some(self.early.remove(i));
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left).await?;
            if v["uuid"] == uuid {
                return Some(v);
            }
            self.early.push(v);
        }
    }
}

/// An app's request frame as app libraries build it: `data` (the plaintext JSON) encrypted
/// with the session's auth_key.
pub fn app_frame(cmd: &str, account: &str, key: &AuthKey, data: &str) -> Value {
    json!({
        "cmd": cmd,
        "account": account,
        "data": has_crypto::cryptojs::encrypt(data, key.expose_secret()),
    })
}

/// Milliseconds since the epoch.
pub fn now_ms_i() -> i64 {
    now_ms()
}

/// The audit decision (decision, rule, reason) the service recorded for `uuid`, waiting for
/// it to be recorded (it is written before any reply leaves).
pub async fn decision_for(dir: &std::path::Path, uuid: &str) -> (String, String, String) {
    let s = cli_store(dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let u = uuid.to_owned();
        let rows = s
            .call(move |c| pksa_service::state::audit::list(c, None, None, None))
            .await
            .unwrap();
        if let Some(r) = rows.into_iter().find(|r| r.entry.uuid == u) {
            return (r.entry.decision, r.entry.rule, r.entry.reason);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no decision recorded for {uuid}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `pksa-service enroll --account A [--app X]` for ten minutes, from another process.
pub async fn open_window(dir: &std::path::Path, account: &str, app: Option<&str>) {
    let (a, b) = (account.to_owned(), app.map(str::to_owned));
    cli_store(dir)
        .call(move |c| enrollments::open(c, &a, b.as_deref(), now_ms() + 600_000, None))
        .await
        .unwrap();
}

/// `pksa-service session revoke ID`, from another process.
pub async fn revoke_session(dir: &std::path::Path, id: i64) {
    cli_store(dir)
        .call(move |c| pksa_service::state::sessions::revoke(c, id))
        .await
        .unwrap();
}

/// (account, app) of every session.
pub async fn list_sessions(dir: &std::path::Path) -> Vec<(String, String)> {
    cli_store(dir)
        .call(|c| pksa_service::state::sessions::list(c, None))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.account, r.app))
        .collect()
}

/// A session as `pksa-service session create` makes it.
pub fn operator_session(
    account: &str,
    app: &str,
    key: &has_protocol::AuthKey,
    expire: i64,
) -> pksa_service::state::sessions::NewSession {
    pksa_service::state::sessions::NewSession {
        account: account.into(),
        app: app.into(),
        key: key.clone(),
        expire,
        max_expire: expire,
        origin: "operator",
        token: None,
        nonce_floor: 0,
    }
}

/// An RFC 4122 request id named by `tag` (the same tag gives the same id).
pub fn rid(tag: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(tag.as_bytes());
    format!("00000000-0000-4000-8000-{}", hex::encode(&h[..6]))
}

/// (account, decision) of every audit row.
pub async fn audit_rows(dir: &std::path::Path) -> Vec<(String, String)> {
    cli_store(dir)
        .call(|c| pksa_service::state::audit::list(c, None, None, None))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.entry.account, r.entry.decision))
        .collect()
}

/// (decision, rule, reason) of the newest audit row.
pub async fn audit_last(dir: &std::path::Path) -> (String, String, String) {
    let rows = cli_store(dir)
        .call(|c| pksa_service::state::audit::list(c, None, None, None))
        .await
        .unwrap();
    let e = rows.last().unwrap().entry.clone();
    (e.decision, e.rule, e.reason)
}
