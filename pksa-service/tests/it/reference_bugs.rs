//! One test per bug of the reference service PKSA (has-protocol.md §7.2), showing it cannot
//! happen here. (7.2.1 and 7.2.2 are covered in flows.rs: broadcast flag, sign-only.)

use std::time::Duration;

use has_client::{AuthMode, ClientError};
use has_crypto::KeyRole;
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{
    AuthKey, AuthReqSecret, Encrypted, KeyType, RelayToPksa, RequestId, UnixMillis,
};
use pksa_service::state::{now_ms, sessions};
use serde_json::json;

use crate::env::*;

async fn fake_env(
    accounts: Vec<(String, Vec<KeyRole>)>,
    protocol: f64,
    settings: Option<pksa_service::Settings>,
) -> (
    FakeConn,
    std::sync::Arc<pksa_service::Service>,
    AuthKey,
    tokio::sync::watch::Sender<bool>,
    tempfile::TempDir,
    std::sync::Arc<hive_chain::dryrun::DryRunNode>,
) {
    let fake = FakeRelay::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let node =
        hive_chain::dryrun::DryRunNode::new(hive_chain::ChainId::MAINNET, vec![alice.account()]);
    let (node_url, _) = hive_chain::dryrun::spawn(node.clone(), 0).await.unwrap();
    let n_accounts = accounts.len();
    let settings = settings
        .unwrap_or_else(|| default_settings(&AuthReqSecret::new("e2e-secret-0123456789abcdef")));
    let svc = build_service(
        dir.path(),
        &alice,
        &accounts,
        &node_url,
        &fake.url,
        &[],
        settings,
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
    let conn = fake
        .accept(protocol, if protocol > 1.0 { 0 } else { n_accounts })
        .await;
    (conn, svc, key, stop, dir, node)
}

fn alice_keys() -> Vec<(String, Vec<KeyRole>)> {
    vec![(
        "alice".into(),
        vec![KeyRole::Memo, KeyRole::Posting, KeyRole::Active],
    )]
}

fn sign_req(
    key: &AuthKey,
    uuid: &str,
    nonce: u64,
    account: &str,
    ops: Vec<serde_json::Value>,
) -> serde_json::Value {
    let data = SignReqData {
        key_type: KeyType::Posting,
        ops,
        broadcast: false,
        nonce: Some(has_protocol::Nonce(nonce)),
    };
    encode(&RelayToPksa::SignReq(RelayedSignReq {
        account: account.parse().unwrap(),
        data: Encrypted::encrypt(&data, key),
        uuid: RequestId::try_from(uuid.to_owned()).unwrap(),
        expire: UnixMillis(now_ms() as u64 + 60_000),
        token: None,
    }))
}

/// 7.2.3: state is a transactional store; concurrent requests never lose a nonce update.
#[tokio::test]
async fn bug3_no_lost_nonce_updates_under_concurrency() {
    let (mut conn, svc, key, stop, _d, _n) = fake_env(alice_keys(), 1.0, None).await;
    let base = now_ms() as u64;
    for i in 0..50u64 {
        conn.send(sign_req(
            &key,
            &rid(&format!("u{i}")),
            base + i,
            "alice",
            vec![vote("alice", &format!("p{i}"))],
        ))
        .await;
    }
    for _ in 0..50 {
        assert_eq!(conn.recv().await.unwrap()["cmd"], "sign_ack");
    }
    let row = svc
        .store
        .call(|c| sessions::list(c, Some("alice")))
        .await
        .unwrap();
    assert_eq!(row[0].last_nonce as u64, base + 49);
    let _ = stop.send(true);
}

/// 7.2.4 / 7.2.5 / 7.2.9: undecryptable requests, other PKSAs' sessions and a wrong
/// auth_req_secret get silence — never an `error` frame.
#[tokio::test]
async fn bug4_5_9_silence_for_what_is_not_ours() {
    let (mut conn, _svc, _key, stop, _d, _n) = fake_env(alice_keys(), 1.0, None).await;
    let stranger = AuthKey::generate();
    conn.send(sign_req(
        &stranger,
        "s1",
        now_ms() as u64,
        "alice",
        vec![vote("alice", "x")],
    ))
    .await;
    let wrong_secret =
        Encrypted::encrypt(&stranger, &AuthReqSecret::new("not-the-secret-0123456789"));
    let data = AuthReqData {
        app: AppInfo {
            name: "x".into(),
            description: None,
            icon: None,
            pubkey: None,
        },
        challenge: None,
        token: None,
    };
    conn.send(encode(&RelayToPksa::AuthReq(RelayedAuthReq {
        account: "alice".parse().unwrap(),
        data: Encrypted::encrypt(&data, &stranger),
        uuid: RequestId::try_from(rid("s2")).unwrap(),
        expire: UnixMillis(now_ms() as u64 + 60_000),
        auth_key: Some(wrong_secret),
        token: None,
    })))
    .await;
    // Garbage that CryptoJS would "decrypt" to a short string for some wrong keys.
    conn.send(json!({"cmd": "challenge_req", "account": "alice", "data": "U2FsdGVkX19hYmNkZWZnaAAAAAAAAAAAAAAAAAAAAAA=", "uuid": rid("s3"), "expire": now_ms() + 60_000})).await;
    // Another account, and an expired request.
    conn.send(sign_req(
        &stranger,
        "s4",
        now_ms() as u64,
        "carol",
        vec![vote("carol", "x")],
    ))
    .await;
    assert!(
        conn.recv_within(Duration::from_millis(800)).await.is_none(),
        "nothing at all is answered"
    );
    let _ = stop.send(true);
}

/// 7.2.6: one account without keys does not block the others' registration.
#[tokio::test]
async fn bug6_each_account_registers_on_its_own() {
    let accounts = vec![
        ("alice".into(), vec![KeyRole::Posting]),
        ("bob".into(), vec![KeyRole::Memo]),
    ];
    let (conn, _svc, _k, stop, _d, _n) = fake_env(accounts, 1.0, None).await;
    let mut r = conn.registered.clone();
    r.sort();
    assert_eq!(
        r,
        vec!["alice", "bob"],
        "one register_req per account, each with its own POK"
    );
    let _ = stop.send(true);
}

/// 7.2.7 / 7.2.8: after the server goes away the service reconnects and re-registers (one
/// socket, a fresh heartbeat), and a reply that was in flight does not crash anything.
#[tokio::test]
async fn bug7_8_reconnect_and_reregister_after_the_relay_restarts() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let addr = env.relay_addr;
    let mut env = env;
    let relay = env.relay.take().unwrap();
    relay.shutdown().await.unwrap();
    let alice = TestAccount::new("alice");
    let relay = relay_on(
        addr,
        env.dir.path(),
        &[alice.account()],
        Duration::from_secs(10),
    )
    .await;
    // Re-registered: a request on a new client socket is answered.
    let status = env.svc.servers[0].1.clone();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if status.reconnects.load(std::sync::atomic::Ordering::Relaxed) > 0
                && status.registered.load(std::sync::atomic::Ordering::Relaxed) > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let client2 = has_client::HasClient::connect(&relay.url).await.unwrap();
    client2
        .challenge(&s, KeyType::Posting, "after restart", false)
        .await
        .unwrap();
    env.relay = Some(relay);
    env.stop().await;
}

/// 7.2.10: `key_type` is only a hint; the required authority comes from the operations. A
/// "memo" sign request for a posting operation is signed with the posting key; a "posting"
/// request for a transfer is refused (active).
#[tokio::test]
async fn bug10_key_type_is_a_hint_authority_comes_from_the_ops() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let r = client
        .sign(&s, vec![vote("alice", "m")], KeyType::Memo, false)
        .await
        .unwrap();
    match r {
        has_client::SignResult::Signed { signers, .. } => {
            assert_eq!(signers, vec![*env.alice.keys[1].public_key()])
        }
        other => panic!("{other:?}"),
    }
    let t = json!(["transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": ""}]);
    assert!(matches!(
        client
            .sign(&s, vec![t], KeyType::Posting, true)
            .await
            .unwrap_err(),
        ClientError::Refused { .. }
    ));
    env.stop().await;
}

/// 7.2.11, decided the other way: `auth_err` goes in clear, as the reference PKSA sends it
/// and every app library reads it (Aioha showed our ciphertext as the error), with one fixed
/// text that tells the relay nothing (here the cause is a key the PKSA does not hold).
#[tokio::test]
async fn bug11_auth_err_is_plain_text_with_a_fixed_message() {
    let (mut conn, _svc, key, stop, _d, _n) =
        fake_env(vec![("alice".into(), vec![KeyRole::Posting])], 1.0, None).await;
    // A challenge with the memo key, which this PKSA does not hold (an error, not a
    // refusal by policy: refusals are nacks or silence, like every command's).
    let data = AuthReqData {
        app: AppInfo {
            name: "x".into(),
            description: None,
            icon: None,
            pubkey: None,
        },
        challenge: Some(ChallengeSpec {
            key_type: KeyType::Memo,
            challenge: "c".into(),
        }),
        token: None,
    };
    conn.send(encode(&RelayToPksa::AuthReq(RelayedAuthReq {
        account: "alice".parse().unwrap(),
        data: Encrypted::encrypt(&data, &key),
        uuid: RequestId::try_from(rid("e1")).unwrap(),
        expire: UnixMillis(now_ms() as u64 + 60_000),
        auth_key: None,
        token: None,
    })))
    .await;
    let r = conn.recv().await.unwrap();
    assert_eq!(r["cmd"], "auth_err");
    assert_eq!(r["error"], "Failed to process authentication request");
    assert!(r["pok"].as_str().unwrap().starts_with('#'));
    let _ = stop.send(true);
}

/// 7.2.12 and §1.6: a server announcing a protocol newer than 1 is declined (no key_req).
#[tokio::test]
async fn bug12_newer_protocol_is_declined() {
    let (mut conn, _svc, _k, stop, _d, _n) = fake_env(alice_keys(), 2.0, None).await;
    assert!(
        conn.recv_within(Duration::from_millis(500)).await.is_none(),
        "no key_req to a protocol 2 server"
    );
    let _ = stop.send(true);
}

/// Apps that authenticate with the stored key only (no secret; §5.4) are approved.
#[tokio::test]
async fn stored_key_authentication_without_secret() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    let exp = now_ms() + 86_400_000;
    create_session(env.dir.path(), "alice", "bot", &key, exp).await;
    let client = env.client().await;
    let s = client
        .authenticate("alice", Env::app("bot"), None, AuthMode::ExistingKey(key))
        .await
        .unwrap();
    assert!(s.expire.0 as i64 <= exp);
    env.stop().await;
}

/// The next text frame within 10 s.
async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Option<serde_json::Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str::<serde_json::Value>(t.as_str()).ok();
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A `register_req` the relay refuses (an error, no ack) is sent again with backoff until the
/// account is registered: the service does not stay registered for nothing.
#[tokio::test]
async fn a_refused_registration_is_retried() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let svc = build_service(
        dir.path(),
        &alice,
        &alice_keys(),
        "http://127.0.0.1:9",
        &url,
        &[],
        default_settings(&AuthReqSecret::new("e2e-secret-0123456789abcdef")),
    )
    .await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pksa_service::run(svc.clone(), None, rx));
    let (s, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
    let server = has_crypto::PrivateKey::generate();
    let text = |v: serde_json::Value| Message::Text(v.to_string().into());
    ws.send(text(
        json!({"cmd": "connected", "protocol": 1, "timeout": 60}),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap()["cmd"], "key_req");
    ws.send(text(
        json!({"cmd": "key_ack", "key": server.public_key().to_string()}),
    ))
    .await
    .unwrap();
    let first = next_text(&mut ws).await.unwrap();
    assert_eq!(first["cmd"], "register_req");
    ws.send(text(
        json!({"cmd": "error", "error": "register_req: cannot look up the accounts right now"}),
    ))
    .await
    .unwrap();
    // Sent again (with a fresh proof), then acknowledged.
    let again = next_text(&mut ws).await.expect("register_req sent again");
    assert_eq!(again["cmd"], "register_req");
    assert_ne!(again["accounts"][0]["pok"], first["accounts"][0]["pok"]);
    ws.send(text(json!({"cmd": "register_ack", "account": "alice"})))
        .await
        .unwrap();
    let status = svc.servers[0].1.clone();
    tokio::time::timeout(Duration::from_secs(5), async {
        while status.registered.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("registered after the retry");
    let _ = stop.send(true);
}
