//! Cluster mode: real `redis-server` and several `has-relay` processes on loopback.
//!
//! Every test starts its own Redis on a free port and its own relay nodes sharing one key
//! file, as an operator runs them behind one address; apps and PKSAs pick the node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use has_crypto::PublicKey;
use hive_chain::accounts::Account;
use serde_json::{Value, json};

use crate::peer::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ok` every 20 ms until it holds (at most `secs` seconds).
async fn wait_for(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !ok().await {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` on a loopback port, without persistence (a restart starts empty unless
/// the test says otherwise).
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    async fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        r.up().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port, keeping what it saved when it stopped.
    async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--dir", &self.dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        wait_for("redis-server", 20, async || redis_ping(port).await).await;
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// `PING` over a raw socket (RESP inline command).
async fn redis_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// One has-relay process of the cluster.
struct Node {
    url: String,
    metrics: std::net::SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts a node and waits until it is ready (its store connected).
    async fn start(c: &Cluster, name: &str) -> Node {
        let node = Node::spawn(c, name);
        node.wait_ready(true).await;
        node
    }

    fn spawn(c: &Cluster, name: &str) -> Node {
        Node::spawn_with(c, name, &c.redis.url(), &c.key)
    }

    /// A node reaching Redis at `redis` (a [`Link`], say) with the key file `key`.
    fn spawn_with(c: &Cluster, name: &str, redis: &str, key: &Path) -> Node {
        let port = free_port();
        let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = c.dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_has-relay"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics", &metrics.to_string()])
            .args(["--accounts", &c.accounts.to_string_lossy()])
            .args(["--key-file", &key.to_string_lossy()])
            .args(["--redis", redis])
            .env("RUST_LOG", "has_relay=debug")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node {
            url: format!("ws://127.0.0.1:{port}"),
            metrics,
            child,
            log,
        }
    }

    /// `/readyz`, or None while the node does not listen yet.
    async fn readyz(&self) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.metrics).await.ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .ok()?
            .ok()?;
        Some(out)
    }

    /// Waits until `/readyz` says ready (`true`) or not ready (`false`).
    async fn wait_ready(&self, ready: bool) {
        let t0 = Instant::now();
        loop {
            if let Some(r) = self.readyz().await {
                let is_ready = r.starts_with("HTTP/1.1 200");
                if is_ready == ready {
                    if !ready {
                        assert!(r.contains("cluster store (Redis) is unreachable"), "{r}");
                    }
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "node not {} in 20 s; its log:\n{}",
                if ready { "ready" } else { "unready" },
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        http_get(self.metrics, "/metrics").await
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP path from one node to Redis that a test can cut and heal (a partition of that
/// node alone).
struct Link {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn to(target: u16) -> Link {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let (o, cs) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().unwrap().push(task);
            }
        });
        Link {
            port,
            open,
            conns,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Drops every connection through the link and refuses new ones.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The value of a metric sample line starting with `prefix` (0 when absent).
fn sample(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

struct Cluster {
    dir: tempfile::TempDir,
    accounts: PathBuf,
    key: PathBuf,
    server: PublicKey,
    redis: Redis,
}

impl Cluster {
    async fn new(accounts: &[&TestAccount]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.json");
        let list: Vec<Account> = accounts.iter().map(|a| a.account()).collect();
        std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
        // One key for every node: PKSAs encrypt their proofs to it, whichever node they reach.
        let key = dir.path().join("relay.key");
        let server = *has_relay::load_or_create_server_key(&key)
            .unwrap()
            .public_key();
        let redis = Redis::start(dir.path()).await;
        Cluster {
            dir,
            accounts: file,
            key,
            server,
            redis,
        }
    }
}

async fn sign_req(app: &mut Peer) -> String {
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let wait = app.recv_cmd("sign_wait").await;
    wait["uuid"].as_str().unwrap().to_owned()
}

fn sign_ack(acct: &TestAccount, server: &PublicKey, uuid: &str, tx: &str) -> Value {
    json!({"cmd": "sign_ack", "uuid": uuid, "broadcast": true, "data": tx, "pok": acct.pok(server, uuid)})
}

#[tokio::test]
async fn cluster_cross_node_request_and_reply() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let mut p = pksa(&b.url, &c.server, &alice).await;
    let mut app = Peer::connect(&a.url).await;
    for round in 0..5 {
        let uuid = sign_req(&mut app).await;
        let req = p.recv_cmd("sign_req").await;
        assert_eq!(req["uuid"], uuid, "round {round}");
        assert_eq!(req["data"], DATA);
        let tx = format!("{round:02}").repeat(20);
        p.send(sign_ack(&alice, &c.server, &uuid, &tx)).await;
        let ack = app.recv_cmd("sign_ack").await;
        assert_eq!(ack["uuid"], uuid);
        assert_eq!(ack["data"], tx);
        assert!(ack.get("pok").is_none(), "the pok is the relay's: {ack}");
    }
    // The other way round: the app on the PKSA's node's peer, a PKSA on the app's node.
    let mut p2 = pksa(&a.url, &c.server, &alice).await;
    let mut app2 = Peer::connect(&b.url).await;
    let uuid = sign_req(&mut app2).await;
    assert_eq!(p2.recv_cmd("sign_req").await["uuid"], uuid);
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p2.send(sign_ack(&alice, &c.server, &uuid, "ee")).await;
    assert_eq!(app2.recv_cmd("sign_ack").await["data"], "ee");
    let ma = a.metrics().await;
    assert!(ma.contains("has_relay_cluster_up 1"), "{ma}");
    has_relay::metrics::check_exposition(ma.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        ma.contains(r#"has_relay_frames_total{cmd="cluster",outcome="answer_in"} 5"#),
        "node a got the five answers node b took: {ma}"
    );
}

#[tokio::test]
async fn cluster_cross_node_attach() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let n3 = Node::start(&c, "c").await;

    // Answered while the app was away: the app attaches through another node.
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    drop(app);
    let mut p = pksa(&b.url, &c.server, &alice).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "aa")).await;
    let mut app = Peer::connect(&n3.url).await;
    // The answer is in the store once the PKSA's node took it: attach until it is there.
    app.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(app.recv().await, json!({"cmd": "attach_ack", "uuid": uuid}));
    let ack = match app.try_recv(Duration::from_secs(2)).await {
        Some(ack) => ack,
        None => {
            app.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
            app.recv_cmd("sign_ack").await
        }
    };
    assert_eq!(ack["cmd"], "sign_ack");
    assert_eq!(ack["data"], "aa");

    // Attached elsewhere before the answer: the answer follows the app to its new node.
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    let mut moved = Peer::connect(&n3.url).await;
    moved.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(moved.recv().await["cmd"], "attach_ack");
    p.send(sign_ack(&alice, &c.server, &uuid, "bb")).await;
    let ack = moved.recv_cmd("sign_ack").await;
    assert_eq!(
        (ack["uuid"].as_str(), ack["data"].as_str()),
        (Some(uuid.as_str()), Some("bb"))
    );

    // Unknown anywhere: nack.
    let bogus = "00000000-0000-4000-8000-000000000000";
    moved
        .send(json!({"cmd": "attach_req", "uuid": bogus}))
        .await;
    assert_eq!(
        moved.recv().await,
        json!({"cmd": "attach_nack", "uuid": bogus})
    );
}

#[tokio::test]
async fn cluster_node_restart_keeps_pending_requests() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let mut a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;

    // Acknowledged with *_wait, then the node dies without a chance to say anything.
    let mut app = Peer::connect(&a.url).await;
    let mut uuids = vec![];
    for _ in 0..3 {
        uuids.push(sign_req(&mut app).await);
    }
    a.kill9();
    assert!(app.try_recv(Duration::from_secs(2)).await.is_none());

    // The app re-attaches through b; a PKSA that registers on b gets every request.
    let mut app = Peer::connect(&b.url).await;
    for u in &uuids {
        app.send(json!({"cmd": "attach_req", "uuid": u})).await;
        assert_eq!(app.recv().await, json!({"cmd": "attach_ack", "uuid": u}));
    }
    let mut p = pksa(&b.url, &c.server, &alice).await;
    let mut got = vec![];
    for _ in 0..3 {
        got.push(
            p.recv_cmd("sign_req").await["uuid"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    got.sort();
    let mut want = uuids.clone();
    want.sort();
    assert_eq!(got, want);
    for u in &uuids {
        p.send(sign_ack(&alice, &c.server, u, "cc")).await;
        assert_eq!(app.recv_cmd("sign_ack").await["uuid"], *u);
    }

    // The node comes back (a new process) and serves as before.
    let a = Node::start(&c, "a2").await;
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "dd")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "dd");
}

/// SIGTERM: the node closes its sockets with "going away" and exits 0; what it acknowledged
/// is served by the others.
#[tokio::test]
async fn cluster_sigterm_drains_to_the_other_nodes() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let mut a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    let status = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The close frame says why.
    use futures_util::StreamExt;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), app.ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f)))) => break f,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001), "going away");
    let exit = a.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let mut app = Peer::connect(&b.url).await;
    app.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(app.recv().await["cmd"], "attach_ack");
    let mut p = pksa(&b.url, &c.server, &alice).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "ff")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "ff");
}

#[tokio::test]
async fn cluster_first_reply_wins_across_nodes() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let n3 = Node::start(&c, "c").await;
    let mut pa = pksa(&a.url, &c.server, &alice).await;
    let mut pb = pksa(&b.url, &c.server, &alice).await;
    let mut app = Peer::connect(&n3.url).await;
    for round in 0..10 {
        let uuid = sign_req(&mut app).await;
        assert_eq!(pa.recv_cmd("sign_req").await["uuid"], uuid);
        assert_eq!(pb.recv_cmd("sign_req").await["uuid"], uuid);
        // Both answer at once, with different results.
        let (x, y) = (
            sign_ack(&alice, &c.server, &uuid, "0a"),
            sign_ack(&alice, &c.server, &uuid, "0b"),
        );
        tokio::join!(pa.send(x), pb.send(y));
        let first = app.recv_cmd("sign_ack").await;
        assert_eq!(first["uuid"], uuid, "round {round}");
        // An app that attaches gets the same answer: the one the store kept.
        let mut other = Peer::connect(&a.url).await;
        other.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
        assert_eq!(other.recv().await["cmd"], "attach_ack");
        let kept = other.recv_cmd("sign_ack").await;
        assert_eq!(kept["data"], first["data"], "round {round}");
    }
    // Exactly one answer per request reached the app.
    app.expect_silence(Duration::from_millis(500)).await;
    let count = |m: &str, outcome: &str| -> u64 {
        m.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "has_relay_frames_total{{cmd=\"sign_ack\",outcome=\"{outcome}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
            .unwrap_or(0)
    };
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    assert_eq!(
        count(&ma, "relayed") + count(&mb, "relayed"),
        10,
        "{ma}\n{mb}"
    );
    assert_eq!(
        count(&ma, "already_answered") + count(&mb, "already_answered"),
        10
    );
}

#[tokio::test]
async fn cluster_redis_down_and_back() {
    let alice = TestAccount::new("alice");
    let mut c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let mut p = pksa(&a.url, &c.server, &alice).await;

    c.redis.down();
    a.wait_ready(false).await;
    b.wait_ready(false).await;
    assert!(a.metrics().await.contains("has_relay_cluster_up 0"));

    // Node a serves what it holds on its own.
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "11")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "11");

    // Acknowledged and answered while the store was away, with the app gone meanwhile.
    let uuid = sign_req(&mut app).await;
    drop(app);
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "22")).await;
    // A node that holds nothing of it cannot tell: the app is told to try again, not "gone".
    let mut elsewhere = Peer::connect(&b.url).await;
    elsewhere
        .send(json!({"cmd": "attach_req", "uuid": uuid}))
        .await;
    let e = elsewhere.recv().await;
    assert_eq!(e["cmd"], "error", "{e}");
    assert!(e["error"].as_str().unwrap().contains("try again"), "{e}");

    // The store comes back (with what it had saved); node a writes what it took meanwhile.
    c.redis.up().await;
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let mut app = Peer::connect(&b.url).await;
    app.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(app.recv().await["cmd"], "attach_ack");
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "22");

    // And the cluster routes across nodes again (b subscribed anew, a re-subscribed).
    let uuid = sign_req(&mut app).await;
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], uuid);
    p.send(sign_ack(&alice, &c.server, &uuid, "33")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "33");
}

/// A node that lost the race for an answer, and the node that made the request, both learn
/// the answer: a PKSA registering there later is not asked again, and the request stops
/// counting in the making node's pending requests.
#[tokio::test]
async fn cluster_every_node_learns_the_answer() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let n3 = Node::start(&c, "c").await;
    let mut pa = pksa(&a.url, &c.server, &alice).await;
    let mut pb = pksa(&b.url, &c.server, &alice).await;

    // Made on a, the app moves to c, b's PKSA answers.
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    assert_eq!(pa.recv_cmd("sign_req").await["uuid"], uuid);
    assert_eq!(pb.recv_cmd("sign_req").await["uuid"], uuid);
    drop(app);
    let mut app = Peer::connect(&n3.url).await;
    app.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(app.recv().await["cmd"], "attach_ack");
    pb.send(sign_ack(&alice, &c.server, &uuid, "77")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "77");
    // Node a hears of it (announced to the account's nodes and to the request's node).
    wait_for("node a to learn the answer", 10, async || {
        sample(&a.metrics().await, "has_relay_queue_depth ") == 0
    })
    .await;
    // a's own PKSA answering late is told nothing (its node kept the answer that won).
    pa.send(sign_ack(&alice, &c.server, &uuid, "88")).await;

    // Made on c with its app there: a holds a copy only for its PKSA, and hears of b's
    // answer on the account's channel.
    let mut app3 = Peer::connect(&n3.url).await;
    let other = sign_req(&mut app3).await;
    assert_eq!(pa.recv_cmd("sign_req").await["uuid"], other);
    assert_eq!(pb.recv_cmd("sign_req").await["uuid"], other);
    let heard = sample(
        &a.metrics().await,
        r#"has_relay_frames_total{cmd="cluster",outcome="answer_in"}"#,
    );
    pb.send(sign_ack(&alice, &c.server, &other, "99")).await;
    assert_eq!(app3.recv_cmd("sign_ack").await["data"], "99");
    wait_for("node a to hear the answer", 10, async || {
        sample(
            &a.metrics().await,
            r#"has_relay_frames_total{cmd="cluster",outcome="answer_in"}"#,
        ) > heard
    })
    .await;
    // A new PKSA socket on a is not asked for either answered request: the next thing it
    // sees is the next request.
    let mut late = pksa(&a.url, &c.server, &alice).await;
    let next = sign_req(&mut app3).await;
    assert_eq!(late.recv_cmd("sign_req").await["uuid"], next);
    let ma = a.metrics().await;
    assert_eq!(
        sample(
            &ma,
            r#"has_relay_frames_total{cmd="sign_ack",outcome="already_answered"}"#
        ),
        1,
        "{ma}"
    );
    // The answer the store kept is the one every node gives an app that attaches.
    let mut again = Peer::connect(&a.url).await;
    again.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(again.recv().await["cmd"], "attach_ack");
    assert_eq!(again.recv_cmd("sign_ack").await["data"], "77");
}

/// One node cut off from Redis (the others keep it): what it acknowledged meanwhile reaches
/// the PKSAs on the other nodes when its link heals, and an answer announced to it while it
/// was away reaches its app.
#[tokio::test]
async fn cluster_one_node_partitioned_and_healed() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let link = Link::to(c.redis.port).await;
    let a = Node::spawn_with(&c, "a", &link.url(), &c.key);
    a.wait_ready(true).await;
    let b = Node::start(&c, "b").await;
    let mut pb = pksa(&b.url, &c.server, &alice).await;
    let mut app = Peer::connect(&a.url).await;

    // Made before the cut: its answer is announced to a while a is away.
    let before = sign_req(&mut app).await;
    assert_eq!(pb.recv_cmd("sign_req").await["uuid"], before);
    link.cut();
    a.wait_ready(false).await;
    pb.send(sign_ack(&alice, &c.server, &before, "44")).await;
    // Made during the cut: a acknowledges it and keeps it.
    let during = sign_req(&mut app).await;
    let ma = a.metrics().await;
    assert_eq!(
        sample(
            &ma,
            r#"has_relay_frames_total{cmd="cluster",outcome="request_not_stored"}"#
        ),
        1,
        "{ma}"
    );

    link.heal();
    a.wait_ready(true).await;
    // The answer a missed, read back from the store for its app.
    let got = app.recv_cmd("sign_ack").await;
    assert_eq!(
        (got["uuid"].as_str(), got["data"].as_str()),
        (Some(before.as_str()), Some("44"))
    );
    // The request b's PKSA never heard of, written and announced by a.
    assert_eq!(pb.recv_cmd("sign_req").await["uuid"], during);
    pb.send(sign_ack(&alice, &c.server, &during, "55")).await;
    let got = app.recv_cmd("sign_ack").await;
    assert_eq!(
        (got["uuid"].as_str(), got["data"].as_str()),
        (Some(during.as_str()), Some("55"))
    );
    // a wrote its requests again on reconnect: the answered one is not pending again, so a
    // PKSA registering now is asked for neither.
    let mut fresh = pksa(&b.url, &c.server, &alice).await;
    let next = sign_req(&mut app).await;
    assert_eq!(fresh.recv_cmd("sign_req").await["uuid"], next);
}

/// A socket that registered for nothing cannot make a node read (and keep) other nodes'
/// requests by answering them; a node with another key file does not join.
#[tokio::test]
async fn cluster_strangers_and_misconfigured_nodes() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    let mut stranger = Peer::connect(&b.url).await;
    stranger
        .send(json!({"cmd": "sign_ack", "uuid": uuid, "data": "00", "broadcast": false}))
        .await;
    let e = stranger.recv().await;
    assert!(
        e["error"].as_str().unwrap().contains("not_registered"),
        "{e}"
    );
    // Not a UUID: unknown without asking the store.
    stranger
        .send(json!({"cmd": "attach_req", "uuid": "has:req:x"}))
        .await;
    assert_eq!(stranger.recv().await["cmd"], "attach_nack");
    // Guessing uuids costs the store a few reads per second per connection, no more.
    let n = 200;
    for _ in 0..n {
        let guess = uuid::Uuid::new_v4().to_string();
        stranger
            .send(json!({"cmd": "attach_req", "uuid": guess}))
            .await;
    }
    let (mut nacks, mut refused) = (0, 0);
    for _ in 0..n {
        let f = stranger.recv().await;
        match f["cmd"].as_str() {
            Some("attach_nack") => nacks += 1,
            Some("error")
                if f["error"]
                    .as_str()
                    .unwrap()
                    .contains("try again in a second") =>
            {
                refused += 1
            }
            _ => panic!("{f}"),
        }
    }
    assert!(nacks <= 64 + 16, "{nacks} store reads");
    assert_eq!(nacks + refused, n);
    app.expect_silence(Duration::from_millis(200)).await;

    let other_key = c.dir.path().join("other.key");
    let odd = Node::spawn_with(&c, "odd", &c.redis.url(), &other_key);
    wait_for("the odd node to refuse to join", 20, async || {
        std::fs::read_to_string(&odd.log)
            .unwrap_or_default()
            .contains("every node needs the same key file")
    })
    .await;
    odd.wait_ready(false).await;
}

/// A PKSA that drops and registers again on the same node is not asked for a request another
/// node's PKSA answered while it was away (its node held a copy, and had stopped listening
/// to the account).
#[tokio::test]
async fn cluster_a_returning_pksa_is_not_asked_again() {
    let alice = TestAccount::new("alice");
    let c = Cluster::new(&[&alice]).await;
    let a = Node::start(&c, "a").await;
    let b = Node::start(&c, "b").await;
    let n3 = Node::start(&c, "c").await;
    let mut p1 = pksa(&b.url, &c.server, &alice).await;
    let mut p2 = pksa(&n3.url, &c.server, &alice).await;
    let mut app = Peer::connect(&a.url).await;
    let uuid = sign_req(&mut app).await;
    assert_eq!(p1.recv_cmd("sign_req").await["uuid"], uuid);
    assert_eq!(p2.recv_cmd("sign_req").await["uuid"], uuid);
    drop(p1);
    wait_for("node b to drop the PKSA", 10, async || {
        sample(&b.metrics().await, "has_relay_registered_accounts ") == 0
    })
    .await;
    p2.send(sign_ack(&alice, &c.server, &uuid, "66")).await;
    assert_eq!(app.recv_cmd("sign_ack").await["data"], "66");
    let mut p1 = pksa(&b.url, &c.server, &alice).await;
    let next = sign_req(&mut app).await;
    assert_eq!(p1.recv_cmd("sign_req").await["uuid"], next);
}
