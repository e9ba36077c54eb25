//! A battery of malformed and hostile frames against the relay and the service: nothing
//! crashes, and every frame gets its documented response.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use has_crypto::KeyRole;
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, KeyType, RelayToPksa, RequestId, UnixMillis};
use pksa_service::state::{now_ms, sessions};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::env::*;

const CT: &str = "U2FsdGVkX18BAgMEBQYHCDvftjHluU7Q6gqbBOS5TwcQymcx+tfGNz5Zm1GTP+3T";

/// (frame text, expected relay outcome counter `cmd/outcome`).
fn relay_battery() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = vec![];
    for bad in [
        "{",
        "}",
        "[",
        "nul",
        "{\"cmd\":",
        "{'cmd':'auth_req'}",
        "{\"cmd\":\"auth_req\",}",
        "\u{0}",
        "{{}}",
        "[1,2",
        "\"just a string",
        "{\"a\":1 \"b\":2}",
        "NaN",
        "{\"cmd\":\"x\"]",
        "<html>",
        "{\"cmd\":\"auth_req\",\"account\":\"alice\",\"data\":\"x\"",
        "\\",
        "{]",
        "tru",
        "{\"cmd\":\"sign_req\"\n",
    ] {
        v.push((bad.to_owned(), "frame/not_json"));
    }
    for not_obj in [
        "[]",
        "1",
        "\"auth_req\"",
        "true",
        "null",
        "[{\"cmd\":\"auth_req\"}]",
        "3.14",
        "[\"ping\"]",
        "-1",
        "false",
    ] {
        v.push((not_obj.to_owned(), "frame/not_object"));
    }
    for no_cmd in [
        json!({}),
        json!({"cmd": 1}),
        json!({"cmd": null}),
        json!({"cmd": ["auth_req"]}),
        json!({"command": "auth_req"}),
        json!({"cmd": {"x": 1}}),
        json!({"CMD": "auth_req"}),
        json!({"cmd": true}),
        json!({"account": "alice"}),
        json!({"cmd": 0.8}),
    ] {
        v.push((no_cmd.to_string(), "frame/missing_cmd"));
    }
    // Wrong types and values in every request field.
    let bads: Vec<(&str, Value)> = vec![
        ("account", json!(5)),
        ("account", json!(null)),
        ("account", json!("Alice")),
        ("account", json!("ab")),
        ("account", json!("a".repeat(17))),
        ("account", json!(["alice"])),
        ("data", json!(5)),
        ("data", json!(null)),
        ("data", json!("plaintext")),
        ("data", json!({"a": 1})),
        ("data", json!([CT])),
        ("data", json!(true)),
        ("auth_key", json!(5)),
        ("auth_key", json!("plain")),
        ("auth_key", json!({"k": 1})),
        ("token", json!(5)),
        ("token", json!(["t"])),
        ("token", json!({"t": 1})),
    ];
    for cmd in ["auth_req", "sign_req", "challenge_req"] {
        for (field, value) in &bads {
            if (*field == "auth_key") && cmd != "auth_req" {
                continue;
            }
            let mut f = json!({"cmd": cmd, "account": "alice", "data": CT});
            f[*field] = value.clone();
            if value.is_null() && (*field == "auth_key" || *field == "token") {
                continue;
            }
            v.push((
                f.to_string(),
                match cmd {
                    "auth_req" => "auth_req/invalid",
                    "sign_req" => "sign_req/invalid",
                    _ => "challenge_req/invalid",
                },
            ));
        }
    }
    for u in [
        json!(5),
        json!(""),
        json!(null),
        json!("x".repeat(200)),
        json!(["u"]),
    ] {
        v.push((
            json!({"cmd": "attach_req", "uuid": u}).to_string(),
            "attach_req/invalid",
        ));
    }
    // Replies from a socket that registered nothing, for unknown uuids, without pok.
    for cmd in [
        "auth_ack",
        "sign_ack",
        "challenge_ack",
        "auth_nack",
        "sign_nack",
        "challenge_nack",
        "auth_err",
        "sign_err",
        "challenge_err",
    ] {
        let data = if cmd == "sign_ack" {
            json!("00")
        } else {
            json!(CT)
        };
        let mut f = json!({"cmd": cmd, "uuid": "00000000-0000-4000-8000-000000000000", "data": data, "error": "e", "pok": "#abc"});
        if cmd.ends_with("_ack") && cmd != "sign_ack" {
            f.as_object_mut().unwrap().remove("error");
        }
        v.push((f.to_string(), leak(format!("{cmd}/unknown_request"))));
    }
    // Unknown commands and Keychain Mobile's waits: ignored.
    for cmd in [
        "auth_wait",
        "sign_wait",
        "hello",
        "connected",
        "key_ack",
        "register_ack",
        "AUTH_REQ",
        "auth-req",
        "sign",
        "",
    ] {
        v.push((json!({"cmd": cmd}).to_string(), "unknown/ignored"));
    }
    // Huge fields.
    for n in [600 * 1024, 800 * 1024] {
        v.push((json!({"cmd": "auth_req", "account": "alice", "data": format!("U2FsdGVkX1{}", "A".repeat(n))}).to_string(), "frame/too_large"));
    }
    for _ in 0..5 {
        v.push(("ping".to_owned(), "ping_text/ignored"));
    }
    v
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let mut m = HashMap::new();
    for line in out
        .lines()
        .filter(|l| l.starts_with("has_relay_frames_total{"))
    {
        let (labels, n) = line.rsplit_once(' ').unwrap();
        let cmd = labels
            .split("cmd=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let outcome = labels
            .split("outcome=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        m.insert(format!("{cmd}/{outcome}"), n.parse().unwrap());
    }
    m
}

#[tokio::test]
async fn hostile_frames_against_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let file = dir.path().join("accounts.json");
    std::fs::write(&file, serde_json::to_string(&[alice.account()]).unwrap()).unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c =
        has_relay::RelayConfig::new(dir.path().join("k"), has_relay::AccountSource::File(file));
    c.frames_per_second = 100_000;
    c.metrics_listen = Some(metrics);
    let relay = has_relay::spawn("127.0.0.1:0".parse().unwrap(), c)
        .await
        .unwrap();
    let battery = relay_battery();
    assert!(battery.len() >= 110, "{} frames", battery.len());
    let (mut ws, _) = tokio_tungstenite::connect_async(&relay.url).await.unwrap();
    let _connected = ws.next().await;
    let mut expected: HashMap<String, u64> = HashMap::new();
    for (text, outcome) in &battery {
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        *expected.entry((*outcome).to_owned()).or_default() += 1;
    }
    // Then a valid request on the same socket: still served.
    ws.send(Message::Text(
        json!({"cmd": "auth_req", "account": "alice", "data": CT})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut got_wait = false;
    let mut errors = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            match v["cmd"].as_str() {
                Some("auth_wait") => {
                    got_wait = true;
                    break;
                }
                Some("error") => errors += 1,
                other => panic!("unexpected {other:?}: {v}"),
            }
        }
    }
    assert!(got_wait, "the socket survived the battery");
    assert!(errors >= 1, "garbage is answered (rate-limited)");
    let counts = scrape(metrics).await;
    for (k, n) in &expected {
        assert_eq!(counts.get(k).copied().unwrap_or(0), *n, "outcome {k}");
    }
    eprintln!(
        "relay battery: {} frames, outcomes {expected:?}",
        battery.len()
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_requests_against_the_service() {
    let fake = FakeRelay::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let node =
        hive_chain::dryrun::DryRunNode::new(hive_chain::ChainId::MAINNET, vec![alice.account()]);
    let (node_url, _) = hive_chain::dryrun::spawn(node.clone(), 0).await.unwrap();
    let accounts = vec![(
        "alice".to_owned(),
        vec![KeyRole::Memo, KeyRole::Posting, KeyRole::Active],
    )];
    let svc = build_service(
        dir.path(),
        &alice,
        &accounts,
        &node_url,
        &fake.url,
        &[],
        default_settings(&has_protocol::AuthReqSecret::new(
            "e2e-secret-0123456789abcdef",
        )),
    )
    .await;
    let key = AuthKey::generate();
    let (k2, sealer) = (key.clone(), svc.store.sealer().clone());
    let exp = now_ms() + 86_400_000;
    svc.store
        .call(move |c| sessions::insert(c, &sealer, &operator_session("alice", "bot", &k2, exp)))
        .await
        .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pksa_service::run(svc.clone(), None, rx));
    let mut conn = fake.accept(1.0, 1).await;

    let later = UnixMillis(now_ms() as u64 + 60_000);
    let acct = |a: &str| a.parse::<has_protocol::AccountName>().unwrap();
    let req_id = |s: String| RequestId::try_from(s).unwrap();
    let sign = |k: &AuthKey, ops: Vec<Value>, nonce: Option<u64>| {
        Encrypted::encrypt(
            &SignReqData {
                key_type: KeyType::Posting,
                ops,
                broadcast: false,
                nonce: nonce.map(has_protocol::Nonce),
            },
            k,
        )
    };
    let mut frames: Vec<(String, Option<&'static str>, String)> = vec![]; // (uuid, expected reply cmd, frame text)
    let mut n = 0u64;
    let mut next = |exp: Option<&'static str>, f: Box<dyn Fn(RequestId) -> Value>| {
        n += 1;
        let uuid = crate::env::rid(&format!("h-{n}"));
        let frame = f(req_id(uuid.clone()));
        (uuid, exp, frame.to_string())
    };
    // 1. Relayed requests with data that is not a ciphertext, wrong types, bad values: the
    //    frame fails its schema and is ignored (silence).
    for bad in [
        json!(5),
        json!("plain"),
        json!(null),
        json!({"x": 1}),
        json!("U2FsdGVkX1@@@@"),
        json!(""),
    ] {
        for cmd in ["auth_req", "sign_req", "challenge_req"] {
            let bad = bad.clone();
            frames.push(next(None, Box::new(move |u| json!({"cmd": cmd, "account": "alice", "uuid": u, "expire": later, "data": bad.clone()}))));
        }
    }
    for (field, value) in [
        ("expire", json!("soon")),
        ("expire", json!(-5)),
        ("uuid", json!(7)),
        ("uuid", json!("")),
        ("account", json!("Alice")),
        ("account", json!(3)),
    ] {
        for cmd in ["auth_req", "sign_req", "challenge_req"] {
            let value = value.clone();
            frames.push(next(None, Box::new(move |u| {
                let mut f = json!({"cmd": cmd, "account": "alice", "uuid": u, "expire": later, "data": CT});
                f[field] = value.clone();
                f
            })));
        }
    }
    // 2. Valid ciphertexts under keys that are not ours: silence (never an oracle).
    for i in 0..20 {
        let stranger = AuthKey::generate();
        let ops = vec![vote("alice", &format!("s{i}"))];
        frames.push(next(
            None,
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct("alice"),
                    data: sign(&stranger, ops.clone(), Some(now_ms() as u64)),
                    uuid: u,
                    expire: later,
                    token: None,
                }))
            }),
        ));
    }
    // 3. Bad base64 and corrupted ciphertexts: silence.
    for i in 0..15 {
        let good = sign(&key, vec![vote("alice", &format!("c{i}"))], Some(1))
            .as_str()
            .to_owned();
        let cut = format!(
            "{}{}",
            &good[..good.len() - 8 - i % 5],
            if i % 2 == 0 { "!!" } else { "" }
        );
        frames.push(next(None, Box::new(move |u| json!({"cmd": "sign_req", "account": "alice", "uuid": u, "expire": later, "data": cut.clone()}))));
    }
    // 4. Expired requests (valid otherwise): silence.
    for i in 0..15 {
        let data = sign(
            &key,
            vec![vote("alice", &format!("e{i}"))],
            Some(now_ms() as u64 + 1000 + i),
        );
        frames.push(next(
            None,
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct("alice"),
                    data: data.clone(),
                    uuid: u,
                    expire: UnixMillis(now_ms() as u64 - 1000),
                    token: None,
                }))
            }),
        ));
    }
    // 5. Foreign accounts: silence.
    for name in [
        "carol", "dave", "hive-io", "bob", "eve", "mallory", "trent", "peggy", "victor", "walter",
    ] {
        let data = sign(&key, vec![vote(name, "f")], Some(now_ms() as u64));
        frames.push(next(
            None,
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct(name),
                    data: data.clone(),
                    uuid: u,
                    expire: later,
                    token: None,
                }))
            }),
        ));
    }
    // 6. Our session, invalid payloads: an encrypted *_err.
    for bad in [
        json!({"ops": []}),
        json!({"key_type": "owner", "ops": [["vote", {}]], "broadcast": true}),
        json!({"key_type": "posting", "ops": "x", "broadcast": true}),
        json!([1, 2]),
        json!("text"),
        json!({"key_type": "posting", "ops": [1], "broadcast": true}),
    ] {
        let ct = has_crypto::cryptojs::encrypt(&bad.to_string(), key.expose_secret());
        frames.push(next(Some("sign_err"), Box::new(move |u| json!({"cmd": "sign_req", "account": "alice", "uuid": u, "expire": later, "data": ct.clone()}))));
    }
    // 7. Our session, operations that do not parse: sign_err naming the op and field.
    for bad in [
        json!(["vote", {"voter": "alice"}]),
        json!(["fill_order", {}]),
        json!(["transfer", {"from": "alice", "to": "bob", "amount": "1.0 HIVE", "memo": ""}]),
        json!(["vote", {"voter": "alice", "author": "b", "permlink": "p", "weight": 99999}]),
    ] {
        let data = sign(&key, vec![bad], Some(now_ms() as u64 + 100_000));
        frames.push(next(
            Some("sign_err"),
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct("alice"),
                    data: data.clone(),
                    uuid: u,
                    expire: later,
                    token: None,
                }))
            }),
        ));
    }
    // 8. Replayed nonces (after a first accepted one): sign_err.
    let first = now_ms() as u64 + 200_000;
    let data = sign(&key, vec![vote("alice", "first")], Some(first));
    frames.push(next(
        Some("sign_ack"),
        Box::new(move |u| {
            encode(&RelayToPksa::SignReq(RelayedSignReq {
                account: acct("alice"),
                data: data.clone(),
                uuid: u,
                expire: later,
                token: None,
            }))
        }),
    ));
    for i in 0..15u64 {
        let data = sign(&key, vec![vote("alice", &format!("r{i}"))], Some(first - i));
        frames.push(next(
            Some("sign_err"),
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct("alice"),
                    data: data.clone(),
                    uuid: u,
                    expire: later,
                    token: None,
                }))
            }),
        ));
    }
    // 9. 0.8 shapes: no nonce on sign (refused: sign_err), challenge without nonce (fine),
    //    top-level token (ignored).
    for i in 0..5 {
        let data = sign(&key, vec![vote("alice", &format!("o{i}"))], None);
        frames.push(next(
            Some("sign_err"),
            Box::new(move |u| {
                encode(&RelayToPksa::SignReq(RelayedSignReq {
                    account: acct("alice"),
                    data: data.clone(),
                    uuid: u,
                    expire: later,
                    token: Some("tok".into()),
                }))
            }),
        ));
        let c = Encrypted::encrypt(
            &ChallengeReqData {
                key_type: KeyType::Posting,
                challenge: format!("c{i}"),
                decrypt: None,
                nonce: None,
            },
            &key,
        );
        frames.push(next(
            Some("challenge_ack"),
            Box::new(move |u| {
                encode(&RelayToPksa::ChallengeReq(RelayedChallengeReq {
                    account: acct("alice"),
                    data: c.clone(),
                    uuid: u,
                    expire: later,
                    token: Some("tok".into()),
                }))
            }),
        ));
    }
    let mut total = frames.len();
    // 10. Text frames and unknown commands: ignored.
    for t in [
        "ping",
        "",
        "hello",
        "{",
        "[]",
        "{\"cmd\":\"bogus\"}",
        "{\"cmd\":\"connected\",\"protocol\":\"x\"}",
        "{\"cmd\":\"error\",\"error\":5}",
        "\u{0}",
        "{\"cmd\":\"key_ack\",\"key\":\"nope\"}",
    ] {
        conn.send_raw(t).await;
        total += 1;
    }
    assert!(total >= 130, "{total} frames");
    let expected: HashMap<String, Option<&'static str>> =
        frames.iter().map(|(u, e, _)| (u.clone(), *e)).collect();
    for (_, _, f) in &frames {
        conn.send_raw(f).await;
    }
    // Sentinel: a valid challenge; wait for it, then a grace period for stragglers.
    let c = Encrypted::encrypt(
        &ChallengeReqData {
            key_type: KeyType::Posting,
            challenge: "sentinel".into(),
            decrypt: None,
            nonce: None,
        },
        &key,
    );
    conn.send(encode(&RelayToPksa::ChallengeReq(RelayedChallengeReq {
        account: acct("alice"),
        data: c,
        uuid: req_id(crate::env::rid("sentinel")),
        expire: later,
        token: None,
    })))
    .await;
    let mut replies: HashMap<String, String> = HashMap::new();
    let mut sentinel = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if sentinel {
            Duration::from_millis(500)
        } else {
            deadline - tokio::time::Instant::now()
        };
        let Some(r) = conn.recv_within(wait).await else {
            break;
        };
        let uuid = r["uuid"].as_str().unwrap_or("").to_owned();
        if uuid == crate::env::rid("sentinel") {
            sentinel = true;
            continue;
        }
        assert!(
            replies
                .insert(uuid.clone(), r["cmd"].as_str().unwrap().to_owned())
                .is_none(),
            "{uuid} answered twice"
        );
        if r.get("pok").is_some() {
            conn.check_pok(&r, &alice);
        }
    }
    assert!(sentinel, "the service survived and still answers");
    for (uuid, exp) in &expected {
        assert_eq!(
            replies.get(uuid).map(String::as_str),
            *exp,
            "reply to {uuid}"
        );
    }
    let silent = expected.values().filter(|e| e.is_none()).count();
    eprintln!(
        "service battery: {total} frames; {silent} silent as documented, {} answered as documented",
        expected.len() - silent
    );
    assert_eq!(node.recorded().len(), 0, "sign-only: nothing broadcast");
    let _ = stop.send(true);
}

/// The relay's rate limit stops floods, not the apps and the PKSA it serves: four app
/// sockets at 8 requests in flight each (32 in all) against a relay limited to 30 frames/s
/// per socket. The apps are slowed down (their dropped frames are sent again by has-client)
/// and every request is answered; the PKSA's socket, answering four sockets' worth of
/// requests, is never limited for its answers.
#[tokio::test]
async fn the_rate_limit_slows_busy_apps_down_and_never_drops_the_pksa_answers() {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = Builder {
        relay_config: Some(Box::new(move |c: &mut has_relay::RelayConfig| {
            c.frames_per_second = 30;
            c.metrics_listen = Some(metrics);
        })),
        ..Builder::default()
    }
    .start()
    .await;
    const PER_APP: usize = 210;
    let mut apps = vec![];
    for a in 0..4 {
        let client = std::sync::Arc::new(env.client().await);
        let session = std::sync::Arc::new(env.auth(&client, &format!("app{a}")).await);
        apps.push((client, session));
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for (client, session) in &apps {
        for _ in 0..8 {
            let (client, session, next) = (client.clone(), session.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 4 * PER_APP {
                    client
                        .challenge(&session, KeyType::Posting, "busy", false)
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            }));
        }
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap();
    }
    assert_eq!(answered, 4 * PER_APP);
    let counts = scrape(metrics).await;
    // The limit was reached (the apps' frames were dropped and sent again) …
    assert!(
        counts.get("frame/rate_limited").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    // … and every answer was relayed.
    assert_eq!(
        counts.get("challenge_ack/relayed").copied(),
        Some(4 * PER_APP as u64),
        "{counts:?}"
    );
    env.stop().await;
}
