//! Every relay rule, over real sockets.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peer::*;

#[tokio::test]
async fn greeting_and_key() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&f.relay.url)
        .await
        .unwrap();
    use futures_util::StreamExt;
    let hello = match ws.next().await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Text(t) => {
            serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap()
        }
        m => panic!("{m:?}"),
    };
    assert_eq!(hello["cmd"], "connected");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["timeout"], 60);
    assert_eq!(hello["ping_rate"], 30);
    assert!(hello["socketid"].as_str().unwrap().len() == 36);
    assert!(hello["version"].is_string() && hello["server"].is_string());
    // key_ack at any time, any number of times, stable across restarts (same key file).
    let mut p = Peer::connect(&f.relay.url).await;
    for _ in 0..2 {
        p.send(json!({"cmd": "key_req"})).await;
        assert_eq!(p.recv().await["key"], f.relay.server_key.to_string());
    }
}

#[tokio::test]
async fn server_key_persists_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let a = has_relay::load_or_create_server_key(&path).unwrap();
    let b = has_relay::load_or_create_server_key(&path).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        has_relay::load_or_create_server_key(&path).is_err(),
        "a world-readable key is refused"
    );
}

#[tokio::test]
async fn registration_rules() {
    let alice = TestAccount::new("alice");
    let bob = TestAccount::new("bob");
    let f = relay_with(&[&alice, &bob], |_| {}).await;
    let server = f.relay.server_key;
    let mut p = Peer::connect(&f.relay.url).await;

    // Unknown account in the batch: nobody is registered.
    p.send(json!({"cmd": "register_req", "app": "t", "accounts": [
        {"name": "alice", "pok": alice.pok(&server, &now_ms().to_string())},
        {"name": "nobody", "pok": alice.pok(&server, &now_ms().to_string())}]}))
        .await;
    let e = p.recv().await;
    assert_eq!(e["cmd"], "error");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown account(s): nobody")
    );

    // POK from another account's key.
    p.send(json!({"cmd": "register_req", "app": "t", "accounts": [{"name": "alice", "pok": bob.pok(&server, &now_ms().to_string())}]})).await;
    let e = p.recv().await;
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not signed by a key of the account"),
        "{e}"
    );

    // Stale timestamp.
    p.send(json!({"cmd": "register_req", "app": "t", "accounts": [{"name": "alice", "pok": alice.pok(&server, &(now_ms() - 60_000).to_string())}]})).await;
    let e = p.recv().await;
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("outside the allowed window"),
        "{e}"
    );

    // Valid protocol 1, then 0.8 form (key_type + challenge) with a doubled '#'.
    p.send(json!({"cmd": "register_req", "app": "t", "accounts": [{"name": "alice", "pok": alice.pok(&server, &now_ms().to_string())}]})).await;
    assert_eq!(
        p.recv().await,
        json!({"cmd": "register_ack", "account": "alice"})
    );
    let mut k = Peer::connect(&f.relay.url).await;
    let challenge = alice.pok(&server, &format!("#{}", now_ms()));
    k.send(json!({"cmd": "register_req", "app": "Hive Keychain", "accounts": [{"key_type": "memo", "challenge": challenge, "name": "bob"}]})).await;
    let e = k.recv().await;
    assert_eq!(e["cmd"], "error", "alice's key cannot register bob");
    let challenge = bob.pok(&server, &format!("#{}", now_ms()));
    k.send(json!({"cmd": "register_req", "app": "Hive Keychain", "accounts": [{"key_type": "memo", "challenge": challenge, "name": "bob"}]})).await;
    assert_eq!(k.recv().await["cmd"], "register_ack");
}

#[tokio::test]
async fn queued_request_is_delivered_on_registration_and_reply_reaches_app_without_pok() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |_| {}).await;
    let server = f.relay.server_key;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA, "auth_key": DATA}))
        .await;
    let wait = app.recv().await;
    assert_eq!(wait["cmd"], "auth_wait");
    assert_eq!(wait["account"], "alice");
    let uuid = wait["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 36);
    assert!(wait["expire"].as_u64().unwrap() > now_ms());

    // The PKSA registers after the request was queued.
    let mut p = pksa(&f.relay.url, &server, &alice).await;
    let req = p.recv_cmd("auth_req").await;
    assert_eq!(req["uuid"], uuid);
    assert_eq!(req["data"], DATA);
    assert_eq!(req["auth_key"], DATA);
    assert_eq!(req["expire"], wait["expire"]);

    p.send(
        json!({"cmd": "auth_ack", "uuid": uuid, "data": DATA, "pok": alice.pok(&server, &uuid)}),
    )
    .await;
    let ack = app.recv().await;
    assert_eq!(
        ack,
        json!({"cmd": "auth_ack", "uuid": uuid, "data": DATA}),
        "pok is stripped"
    );
}

#[tokio::test]
async fn two_pksas_first_reply_wins() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |_| {}).await;
    let server = f.relay.server_key;
    let mut p1 = pksa(&f.relay.url, &server, &alice).await;
    let mut p2 = pksa(&f.relay.url, &server, &alice).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let uuid = app.recv().await["uuid"].as_str().unwrap().to_owned();
    assert_eq!(p1.recv_cmd("sign_req").await["uuid"], uuid);
    assert_eq!(p2.recv_cmd("sign_req").await["uuid"], uuid);
    p1.send(json!({"cmd": "sign_ack", "uuid": uuid, "broadcast": true, "data": "ab".repeat(20), "pok": alice.pok(&server, &uuid)})).await;
    p2.send(
        json!({"cmd": "sign_nack", "uuid": uuid, "data": DATA, "pok": alice.pok(&server, &uuid)}),
    )
    .await;
    let first = app.recv().await;
    assert_eq!(first["cmd"], "sign_ack");
    assert_eq!(first["broadcast"], true);
    app.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn replies_must_come_from_a_registered_socket_with_a_valid_pok() {
    let alice = TestAccount::new("alice");
    let bob = TestAccount::new("bob");
    let f = relay_with(&[&alice, &bob], |_| {}).await;
    let server = f.relay.server_key;
    let mut pa = pksa(&f.relay.url, &server, &alice).await;
    let mut pb = pksa(&f.relay.url, &server, &bob).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "challenge_req", "account": "alice", "data": DATA}))
        .await;
    let uuid = app.recv().await["uuid"].as_str().unwrap().to_owned();
    pa.recv_cmd("challenge_req").await;

    // Bob's PKSA (not registered for alice) answers with a valid pok of its own key.
    pb.send(
        json!({"cmd": "challenge_ack", "uuid": uuid, "data": DATA, "pok": bob.pok(&server, &uuid)}),
    )
    .await;
    assert!(
        pb.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("not_registered")
    );
    // Alice's PKSA without pok (0.8 shape): refused by default.
    pa.send(json!({"cmd": "challenge_ack", "uuid": uuid, "data": DATA}))
        .await;
    assert!(
        pa.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("missing_pok")
    );
    // With a pok over another value.
    pa.send(json!({"cmd": "challenge_ack", "uuid": uuid, "data": DATA, "pok": alice.pok(&server, "other")})).await;
    app.expect_silence(Duration::from_millis(200)).await;
    // A sign_ack for a challenge request.
    pa.send(
        json!({"cmd": "sign_ack", "uuid": uuid, "data": "00", "pok": alice.pok(&server, &uuid)}),
    )
    .await;
    app.expect_silence(Duration::from_millis(200)).await;
    // The right one.
    pa.send(json!({"cmd": "challenge_ack", "uuid": uuid, "data": DATA, "pok": alice.pok(&server, &uuid)})).await;
    assert_eq!(app.recv().await["cmd"], "challenge_ack");
}

#[tokio::test]
async fn replies_without_pok_accepted_when_configured() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.allow_replies_without_pok = true).await;
    let server = f.relay.server_key;
    let mut p = pksa(&f.relay.url, &server, &alice).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA}))
        .await;
    let uuid = app.recv().await["uuid"].as_str().unwrap().to_owned();
    p.recv_cmd("auth_req").await;
    p.send(json!({"cmd": "auth_nack", "uuid": uuid})).await;
    assert_eq!(app.recv().await, json!({"cmd": "auth_nack", "uuid": uuid}));
}

#[tokio::test]
async fn attach_after_reconnect_gets_the_stored_answer_and_expiry_gives_nack() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.timeout = Duration::from_secs(2)).await;
    let server = f.relay.server_key;
    let mut p = pksa(&f.relay.url, &server, &alice).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let wait = app.recv().await;
    let uuid = wait["uuid"].as_str().unwrap().to_owned();
    drop(app); // the app's socket goes away
    p.recv_cmd("sign_req").await;
    p.send(json!({"cmd": "sign_ack", "uuid": uuid, "broadcast": false, "data": {"signatures": []}, "pok": alice.pok(&server, &uuid)})).await;

    let mut app2 = Peer::connect(&f.relay.url).await;
    app2.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(
        app2.recv().await,
        json!({"cmd": "attach_ack", "uuid": uuid})
    );
    let stored = app2.recv().await;
    assert_eq!(stored["cmd"], "sign_ack");
    assert!(stored.get("pok").is_none());

    // Unknown uuid.
    app2.send(json!({"cmd": "attach_req", "uuid": "nope"}))
        .await;
    assert_eq!(
        app2.recv().await,
        json!({"cmd": "attach_nack", "uuid": "nope"})
    );

    // After expiry the answer is gone and a late reply is refused.
    let expire = wait["expire"].as_u64().unwrap();
    while now_ms() <= expire + 50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app2.send(json!({"cmd": "attach_req", "uuid": uuid})).await;
    assert_eq!(app2.recv().await["cmd"], "attach_nack");
}

#[tokio::test]
async fn garbage_is_answered_or_ignored_and_never_kills_the_socket() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.max_frame_bytes = 4096).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send_text("ping").await; // Keychain extension keep-alive: ignored
    app.send(json!({"cmd": "auth_wait"})).await; // unknown from a client: ignored
    app.expect_silence(Duration::from_millis(200)).await;
    app.send_text("{not json").await;
    assert_eq!(
        app.recv().await,
        json!({"cmd": "error", "error": "frame is not valid JSON"})
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // errors are rate-limited to 1/s
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": 5}))
        .await;
    assert_eq!(
        app.recv().await["error"],
        "invalid payload: sign_req: /data must be a string"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": "x".repeat(5000)}))
        .await;
    assert!(
        app.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the 4096 byte limit")
    );
    // Still usable.
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA}))
        .await;
    assert_eq!(app.recv().await["cmd"], "auth_wait");
}

#[tokio::test]
async fn limits_pending_requests_and_rate() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| {
        c.max_pending_per_account = 2;
        c.frames_per_second = 5;
    })
    .await;
    let mut app = Peer::connect(&f.relay.url).await;
    for _ in 0..2 {
        app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA}))
            .await;
        assert_eq!(app.recv().await["cmd"], "auth_wait");
    }
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA}))
        .await;
    assert!(
        app.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("too many pending requests")
    );
    // Burst of 4×5 = 20 frames, then each dropped frame is answered.
    for _ in 0..40 {
        app.send(json!({"cmd": "attach_req", "uuid": "x"})).await;
    }
    let (mut nacks, mut limited) = (0, 0);
    for _ in 0..40 {
        let f = app.recv().await;
        match f["cmd"].as_str() {
            Some("attach_nack") => nacks += 1,
            Some("error") if f["error"].as_str().unwrap().contains("rate limit") => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(limited > 0 && (15..40).contains(&nacks), "nacks {nacks}");
}

#[tokio::test]
async fn heartbeat_closes_a_socket_that_never_pongs() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.ping_rate = Duration::from_millis(200)).await;
    // A raw client: handshake by hand, then read frames without ever answering pings.
    let mut s = tokio::net::TcpStream::connect(f.relay.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", f.relay.addr).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut all = vec![];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return true;
            }
            all.extend_from_slice(&buf[..n]);
            // A close frame from the server: 0x88, then a status 1001 (0x03e9).
            if all
                .windows(4)
                .any(|w| w[0] == 0x88 && w[2] == 0x03 && w[3] == 0xe9)
            {
                return true;
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the relay closed the silent socket");
    assert!(all.windows(1).any(|w| w[0] == 0x89), "it pinged first");
}

/// `/healthz` answers while the process runs; `/readyz` says whether it takes connections.
#[tokio::test]
async fn health_and_readiness_on_the_metrics_address() {
    let alice = TestAccount::new("alice");
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let f = relay_with(&[&alice], |c| {
        c.metrics_listen = Some(metrics_port);
        c.max_connections = 1;
    })
    .await;
    let get = |path: &'static str| http_get(metrics_port, path);
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let r = get("/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("ready\n"),
        "{r}"
    );
    // Its one connection taken: not ready, and says why.
    let app = Peer::connect(&f.relay.url).await;
    let r = get("/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("max_connections reached"),
        "{r}"
    );
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    drop(app);
    // Ready again once the relay has seen it go.
    loop {
        if get("/readyz").await.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_closes_sockets_cleanly_and_metrics_count() {
    let alice = TestAccount::new("alice");
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let f = relay_with(&[&alice], |c| c.metrics_listen = Some(metrics_port)).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "auth_req", "account": "alice", "data": DATA}))
        .await;
    app.recv().await;
    // Metrics over plain HTTP.
    let body = http_get(metrics_port, "/metrics").await;
    assert!(body.contains("has_relay_connections 1"), "{body}");
    assert!(
        body.contains("has_relay_frames_total{cmd=\"auth_req\",outcome=\"accepted\"} 1"),
        "{body}"
    );
    assert!(body.contains("has_relay_queue_depth 1"));
    let text = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(has_relay::metrics::check_exposition(text), Ok(()), "{text}");
    f.relay.shutdown().await.unwrap();
    use futures_util::StreamExt;
    let mut saw_close = false;
    while let Some(Ok(m)) = app.ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(Some(c)) = m {
            assert_eq!(u16::from(c.code), 1001);
            saw_close = true;
        }
    }
    assert!(saw_close);
}

fn relay_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A client that sends pings and never reads must not grow the relay: pongs it does not
/// read coalesce once the socket's bounded write buffer is full (this grew a relay by 5 GB in
/// 20 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_pongs_cannot_grow_the_relay() {
    use futures_util::SinkExt;
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |_| {}).await;
    let before = relay_rss_kib();
    // A raw socket whose receive buffer is tiny and never drained.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(f.relay.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(f.relay.url.clone(), s)
        .await
        .unwrap();
    let payload = vec![7u8; 125];
    let t0 = std::time::Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(3) {
        // feed, not send: never flush-and-read; tungstenite on this side buffers too, so
        // flush in batches.
        for _ in 0..1000 {
            if ws
                .feed(tokio_tungstenite::tungstenite::Message::Ping(
                    payload.clone().into(),
                ))
                .await
                .is_err()
            {
                break;
            }
        }
        if ws.flush().await.is_err() {
            break;
        }
        sent += 1000;
    }
    let grown_mib = relay_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "{sent} pings grew the process by {grown_mib} MiB"
    );
    // The relay still serves everyone else.
    let mut p = Peer::connect(&f.relay.url).await;
    p.send(json!({"cmd": "key_req"})).await;
    assert_eq!(p.recv().await["cmd"], "key_ack");
}

/// RFC 6455 §5.5.1: a client's Close frame is answered with a Close frame.
#[tokio::test]
async fn a_close_frame_is_answered_with_a_close_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&f.relay.url)
        .await
        .unwrap();
    let _connected = ws.next().await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return Ok(c),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed without a Close frame".into()),
            }
        }
    })
    .await
    .unwrap();
    let frame = reply.unwrap();
    assert_eq!(frame.map(|c| c.code), Some(CloseCode::Normal));
}

/// One connection cannot hold an account's pending requests for itself: it is capped per
/// connection, and when an account is full the connection holding the most gives way.
#[tokio::test]
async fn a_stranger_cannot_block_an_account_with_pending_requests() {
    let alice = TestAccount::new("alice");
    // Per-connection cap (the default 64) and per-account cap 256.
    let f = relay_with(&[&alice], |c| c.frames_per_second = 100_000).await;
    let mut stranger = Peer::connect(&f.relay.url).await;
    for _ in 0..300 {
        stranger
            .send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
            .await;
    }
    let (mut waits, mut refused) = (0, 0);
    for _ in 0..300 {
        let r = stranger.recv().await;
        match r["cmd"].as_str() {
            Some("sign_wait") => waits += 1,
            Some("error") => {
                assert!(
                    r["error"].as_str().unwrap().contains("on this connection"),
                    "{r}"
                );
                refused += 1
            }
            other => panic!("{other:?}: {r}"),
        }
    }
    assert_eq!((waits, refused), (64, 236));
    // A legitimate app is not refused.
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    assert_eq!(app.recv().await["cmd"], "sign_wait");
}

/// With the per-connection cap out of the way, a full account still admits a new
/// connection's request: the oldest request of the connection holding the most stops counting
/// for the account, and stays routable (it may already be with a PKSA: its app still gets
/// the answer, and is never told to send it again).
#[tokio::test]
async fn a_full_account_gives_way_to_a_connection_holding_fewer() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| {
        c.frames_per_second = 100_000;
        c.max_pending_per_account = 8;
        c.max_pending_per_socket = 1_000;
    })
    .await;
    let mut heavy = Peer::connect(&f.relay.url).await;
    let mut first = None;
    for _ in 0..8 {
        heavy
            .send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
            .await;
        let w = heavy.recv_cmd("sign_wait").await;
        first.get_or_insert(w["uuid"].as_str().unwrap().to_owned());
    }
    // Full: the heavy connection is refused more...
    heavy
        .send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let r = heavy.recv().await;
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("too many pending requests for alice"),
        "{r}"
    );
    // ...another connection gets in...
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    assert_eq!(app.recv().await["cmd"], "sign_wait");
    heavy.expect_silence(Duration::from_millis(300)).await;
    // ...and the heavy connection's oldest request is still answered when a PKSA does.
    let mut p = pksa(&f.relay.url, &f.relay.server_key, &alice).await;
    let uuid = first.unwrap();
    let mut seen = 0;
    while seen < 9 {
        let r = p.recv().await;
        if r["cmd"] == "sign_req" {
            seen += 1;
        }
    }
    p.send(json!({"cmd": "sign_err", "uuid": uuid, "error": DATA, "pok": alice.pok(&f.relay.server_key, &uuid)}))
        .await;
    let answer = heavy.recv().await;
    assert_eq!(
        (answer["cmd"].as_str(), answer["uuid"].as_str()),
        (Some("sign_err"), Some(uuid.as_str()))
    );
}

/// A rate-limited frame's error names what it dropped.
#[tokio::test]
async fn a_rate_limited_frame_is_named_in_its_error() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.frames_per_second = 1).await;
    let mut app = Peer::connect(&f.relay.url).await;
    for _ in 0..10 {
        app.send(json!({"cmd": "challenge_req", "account": "alice", "data": DATA}))
            .await;
    }
    let mut named = 0;
    for _ in 0..10 {
        let r = app.recv().await;
        if r["cmd"] == "error" {
            assert_eq!(r["error"], "rate limit exceeded: challenge_req dropped");
            named += 1;
        }
    }
    assert!(named >= 5, "{named}");
}

/// Replies are paid for after the fact: those the relay routes are free (a PKSA answers
/// as fast as it is asked), those it does not accept (unknown requests) are charged, and a
/// socket in debt has its replies dropped without a parse.
#[tokio::test]
async fn replies_the_relay_does_not_accept_use_up_the_rate_limit() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| c.frames_per_second = 1).await;
    let mut p = Peer::connect(&f.relay.url).await;
    for _ in 0..30 {
        let uuid = uuid::Uuid::new_v4().to_string();
        p.send(json!({"cmd": "sign_ack", "uuid": uuid, "data": DATA}))
            .await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let r = p.recv().await;
        if r["cmd"] == "error"
            && r["error"]
                .as_str()
                .unwrap()
                .starts_with("rate limit exceeded: sign_ack for ")
        {
            limited += 1;
            if limited == 20 {
                break;
            }
        }
    }
    assert_eq!(limited, 20);
}

/// The relay refuses to start when the open-file limit cannot hold its connections.
#[test]
fn max_connections_beyond_the_open_file_limit_is_refused_with_the_limit_named() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let e = has_relay::ensure_open_files((hard as usize).saturating_add(1)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("hard limit (RLIMIT_NOFILE)") && text.contains("LimitNOFILE="),
        "{text}"
    );
    assert!(has_relay::ensure_open_files(16).is_ok());
}

/// A connection from a chosen loopback address (127.0.0.x: one host, several addresses).
async fn peer_from(url: &str, addr: std::net::SocketAddr, ip: [u8; 4]) -> Peer {
    use futures_util::StreamExt;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    let s = sock.connect(addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(s))
            .await
            .unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("connected"));
    Peer { ws }
}

/// Many connections from one address cannot lock an account out either: the address is
/// capped, and a full account makes room for another address.
#[tokio::test]
async fn many_connections_from_one_address_cannot_block_an_account() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| {
        c.frames_per_second = 100_000;
        c.max_pending_per_account = 8;
        c.max_pending_per_ip = 12;
    })
    .await;
    let (url, addr) = (f.relay.url.clone(), f.relay.addr);
    let mut stranger = vec![];
    let (mut waits, mut refused) = (0, 0);
    for _ in 0..14 {
        let mut p = peer_from(&url, addr, [127, 0, 0, 2]).await;
        p.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
            .await;
        let r = p.recv().await;
        match r["cmd"].as_str() {
            Some("sign_wait") => waits += 1,
            _ => {
                let e = r["error"].as_str().unwrap_or("");
                assert!(
                    e.contains("from this address") || e.contains("for alice"),
                    "{r}"
                );
                refused += 1;
            }
        }
        stranger.push(p);
    }
    // 8 fill the account; then each new connection of the same address holds as few (1) as
    // the heaviest connection, so it is refused; the address cap (12) is not even reached.
    assert_eq!(waits, 8, "refused {refused}");
    // Another address gets in.
    let mut app = peer_from(&url, addr, [127, 0, 0, 3]).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    assert_eq!(app.recv().await["cmd"], "sign_wait");
}

/// What the relay holds for requests is capped per address (a sixteenth of
/// `max_pending_bytes`) and in total: one address cannot fill it, and many together cannot
/// make it hold more than the cap.
#[tokio::test]
async fn pending_bytes_are_capped_per_address_and_in_total() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| {
        c.frames_per_second = 100_000;
        c.max_pending_per_account = 10_000;
        c.max_pending_bytes = 48 * 1024;
    })
    .await;
    let (url, addr) = (f.relay.url.clone(), f.relay.addr);
    // Each relayed sign_req is about 815 bytes (a CryptoJS ciphertext of 704 characters:
    // DATA and ten more 48-byte runs of three blocks, plus the frame): three fit in an
    // address's 3 KiB, 60 in the 48 KiB total (20 addresses).
    let data = format!("{DATA}{}", "A".repeat(640));
    let mut peers = vec![];
    let (mut waits, mut per_address, mut total) = (0, 0, 0);
    for i in 0..25u8 {
        let mut p = peer_from(&url, addr, [127, 0, 1, 10 + i]).await;
        for _ in 0..4 {
            p.send(json!({"cmd": "sign_req", "account": "alice", "data": data}))
                .await;
            let r = p.recv().await;
            match (r["cmd"].as_str(), r["error"].as_str().unwrap_or("")) {
                (Some("sign_wait"), _) => waits += 1,
                (_, e) if e.contains("from this address") => per_address += 1,
                (_, e) if e.contains("try again later") => total += 1,
                _ => panic!("{r}"),
            }
        }
        peers.push(p);
    }
    assert_eq!(
        (waits, per_address, total),
        (60, 20, 20),
        "held, refused per address, refused for the total"
    );
    assert_eq!(waits + per_address + total, 100);
}

/// A PKSA registering for an account with more queued requests than its socket's outbound
/// queue holds gets the newest `REGISTER_BACKLOG` and stays connected (a flood of requests for
/// an account must not keep its PKSA from registering).
#[tokio::test]
async fn registration_backlog_is_bounded() {
    let alice = TestAccount::new("alice");
    let f = relay_with(&[&alice], |c| {
        c.max_pending_per_account = 5_000;
        c.max_pending_per_socket = 5_000;
        c.max_pending_per_ip = 5_000;
        c.frames_per_second = 1_000;
    })
    .await;
    let mut app = Peer::connect(&f.relay.url).await;
    let n = 1_200;
    for _ in 0..n {
        app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
            .await;
    }
    let mut uuids = vec![];
    for _ in 0..n {
        let w = app.recv_cmd("sign_wait").await;
        uuids.push(w["uuid"].as_str().unwrap().to_owned());
    }
    let mut p = pksa(&f.relay.url, &f.relay.server_key, &alice).await;
    let mut got = vec![];
    for _ in 0..has_relay::hub::REGISTER_BACKLOG {
        got.push(
            p.recv_cmd("sign_req").await["uuid"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Still open, and the next request reaches it.
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let next = app.recv_cmd("sign_wait").await["uuid"].clone();
    assert_eq!(p.recv_cmd("sign_req").await["uuid"], next);
    // The newest ones (expiry has millisecond resolution: compare as sets of the tail).
    let newest: std::collections::HashSet<&String> = uuids
        [n - has_relay::hub::REGISTER_BACKLOG - 8..]
        .iter()
        .collect();
    assert!(got.iter().all(|u| newest.contains(u)));
}

/// A local Hive API node answering `condenser_api.get_accounts` from `accounts`; a request
/// naming `slow` is answered only once the test adds a permit to `release`. Returns its URL.
async fn slow_api_node(
    accounts: Vec<hive_chain::accounts::Account>,
    slow: &'static str,
    release: std::sync::Arc<tokio::sync::Semaphore>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let accounts = accounts.clone();
            let release = release.clone();
            tokio::spawn(async move {
                let mut buf = vec![];
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break text[end + 4..end + 4 + len].to_owned();
                        }
                    }
                };
                let req: serde_json::Value = serde_json::from_str(&body).unwrap();
                let names: Vec<String> =
                    serde_json::from_value(req["params"][0].clone()).unwrap_or_default();
                if names.iter().any(|n| n == slow) {
                    release.acquire().await.unwrap().forget();
                }
                let found: Vec<_> = accounts
                    .iter()
                    .filter(|a| names.contains(&a.name))
                    .collect();
                let out = json!({"jsonrpc": "2.0", "id": req["id"], "result": found}).to_string();
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                            out.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    url
}

/// Frames for a socket keep leaving while one of its own frames waits on a slow dependency
/// (here a registration's account lookup; in cluster mode, Redis): a PKSA registering a
/// second account still gets the first account's requests meanwhile.
#[tokio::test]
async fn a_socket_gets_frames_while_its_registration_is_looked_up() {
    let alice = TestAccount::new("alice");
    let bob = TestAccount::new("bob");
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let api = slow_api_node(vec![alice.account(), bob.account()], "bob", release.clone()).await;
    let f = relay_with(&[], |c| {
        c.accounts = has_relay::AccountSource::Nodes(vec![api]);
    })
    .await;
    let server = f.relay.server_key;
    let mut p = pksa(&f.relay.url, &server, &alice).await;
    p.send(json!({"cmd": "register_req", "app": "t", "accounts": [{"name": "bob", "pok": bob.pok(&server, &now_ms().to_string())}]})).await;
    let mut app = Peer::connect(&f.relay.url).await;
    app.send(json!({"cmd": "sign_req", "account": "alice", "data": DATA}))
        .await;
    let uuid = app.recv_cmd("sign_wait").await["uuid"].clone();
    // bob's lookup is held until the PKSA got alice's request: without the frames leaving
    // meanwhile, it never would.
    let first = p.recv().await;
    assert_eq!((&first["cmd"], &first["uuid"]), (&json!("sign_req"), &uuid));
    release.add_permits(1);
    assert_eq!(p.recv_cmd("register_ack").await["account"], "bob");
}
