//! The authorization holes found by attacking the release binary (issue 14), each driven
//! through the real relay and the service (or a hostile relay): an app holding one session,
//! an expired or revoked session, an app renaming itself, or the relay itself must get no
//! signature that the session's real state and the operator's policy do not allow.

use std::time::Duration;

use has_client::{AuthMode, ClientError, SignResult};
use has_crypto::KeyRole;
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, KeyType, RelayToPksa, RequestId, UnixMillis};
use hive_chain::ChainId;
use serde_json::{Value, json};

use crate::env::*;

const SETTLE: Duration = Duration::from_millis(1500);

fn all_roles(name: &str) -> (String, Vec<KeyRole>) {
    (
        name.into(),
        vec![KeyRole::Memo, KeyRole::Posting, KeyRole::Active],
    )
}

fn settings_with(env_secret: &str, policy: &str) -> pksa_service::Settings {
    let mut s = default_settings(&has_protocol::AuthReqSecret::new(env_secret));
    s.policy = toml::from_str(policy).unwrap();
    s
}

const SECRET: &str = "e2e-secret-0123456789abcdef";

fn auth_frame(
    account: &str,
    key: &AuthKey,
    app: &str,
    challenge: Option<(KeyType, &str)>,
    via_secret: bool,
) -> Value {
    let data = AuthReqData {
        app: Env::app(app),
        challenge: challenge.map(|(key_type, c)| ChallengeSpec {
            key_type,
            challenge: c.into(),
        }),
        token: None,
    };
    let mut f = json!({
        "cmd": "auth_req",
        "account": account,
        "data": Encrypted::encrypt(&data, key).as_str(),
    });
    if via_secret {
        f["auth_key"] =
            json!(Encrypted::encrypt(key, &has_protocol::AuthReqSecret::new(SECRET)).as_str());
    }
    f
}

fn sign_frame(account: &str, key: &AuthKey, ops: Vec<Value>, nonce: Option<Value>) -> Value {
    let mut data = json!({"key_type": "posting", "ops": ops, "broadcast": true});
    if let Some(n) = nonce {
        data["nonce"] = n;
    }
    app_frame("sign_req", account, key, &data.to_string())
}

fn challenge_frame(
    account: &str,
    key: &AuthKey,
    key_type: &str,
    text: &str,
    nonce: Option<u64>,
) -> Value {
    let mut data = json!({"key_type": key_type, "challenge": text});
    if let Some(n) = nonce {
        data["nonce"] = json!(n);
    }
    app_frame("challenge_req", account, key, &data.to_string())
}

fn session_of(account: &str, key: &AuthKey, expire: i64) -> has_client::Session {
    has_client::Session::new(
        account.parse().unwrap(),
        key.clone(),
        UnixMillis(expire as u64),
        None,
        None,
    )
}

/// Waits (polling the clock, not the service) until `t` (ms) has passed.
async fn until(t: i64) {
    while now_ms_i() <= t {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 1. A session belongs to one account: an app holding alice's session key gets no
/// authentication (and no posting-key challenge signature) for bob, whether it presents the
/// key through the auth_req_secret or as a stored key.
#[tokio::test]
async fn hole1_an_app_cannot_authenticate_as_another_account() {
    let env = Builder {
        keystore_accounts: vec![all_roles("alice"), all_roles("bob")],
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let mut app = RawApp::connect(&env.relay_url).await;
    // Through the secret: the key is alice's session's, refused for bob.
    let uuid = app
        .request(auth_frame(
            "bob",
            &s.auth_key,
            "game",
            Some((KeyType::Posting, "login:bob")),
            true,
        ))
        .await;
    let d = decision_for(env.dir.path(), &uuid).await;
    assert_eq!(d.0, "deny", "{d:?}");
    let r = app.reply(&uuid, SETTLE).await;
    assert_eq!(r.map(|r| r["cmd"].clone()), Some(json!("auth_nack")));
    // As a stored key: none of bob's sessions decrypts it, so it is not ours (silence).
    let uuid = app
        .request(auth_frame(
            "bob",
            &s.auth_key,
            "game",
            Some((KeyType::Posting, "login:bob")),
            false,
        ))
        .await;
    assert_eq!(app.reply(&uuid, SETTLE).await, None);
    // Nothing was created for bob, nothing approved for him.
    assert_eq!(
        list_sessions(env.dir.path()).await,
        vec![("alice".to_owned(), "game".to_owned())]
    );
    assert!(
        !audit_rows(env.dir.path())
            .await
            .iter()
            .any(|(account, decision)| account == "bob" && decision == "approve")
    );
    // alice's session is untouched and still hers.
    client
        .challenge(&s, KeyType::Posting, "still alice", false)
        .await
        .unwrap();
    env.stop().await;
}

/// 1 (variant). An expired session of alice is not revived through an enrollment window
/// opened for bob, and then cannot sign for alice.
#[tokio::test]
async fn hole1_an_expired_session_is_not_revived_through_another_accounts_window() {
    let env = Builder {
        keystore_accounts: vec![all_roles("alice"), all_roles("bob")],
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    let exp = now_ms_i() + 1_000;
    create_session(env.dir.path(), "alice", "game", &key, exp).await;
    open_window(env.dir.path(), "bob", None).await;
    until(exp).await;
    let mut app = RawApp::connect(&env.relay_url).await;
    let uuid = app
        .request(auth_frame("bob", &key, "game", None, true))
        .await;
    assert_eq!(decision_for(env.dir.path(), &uuid).await.0, "deny");
    assert_ne!(
        app.reply(&uuid, SETTLE).await.map(|r| r["cmd"].clone()),
        Some(json!("auth_ack"))
    );
    let uuid = app
        .request(sign_frame(
            "alice",
            &key,
            vec![vote("alice", "revived")],
            Some(json!(now_ms_i())),
        ))
        .await;
    let r = app.reply(&uuid, SETTLE * 2).await;
    assert_ne!(r.map(|r| r["cmd"].clone()), Some(json!("sign_ack")));
    assert!(env.node.recorded().is_empty(), "nothing reached the node");
    env.stop().await;
}

/// 2. Expiry is checked on every request: a session that expires while cached stops
/// signing at once.
#[tokio::test]
async fn hole2_an_expired_session_stops_signing_while_cached() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    let exp = now_ms_i() + 1_500;
    create_session(env.dir.path(), "alice", "bot", &key, exp).await;
    let client = env.client().await;
    let r = client
        .sign(
            &session_of("alice", &key, exp),
            vec![vote("alice", "before")],
            KeyType::Posting,
            true,
        )
        .await
        .unwrap();
    assert!(matches!(r, SignResult::Broadcast { .. }));
    until(exp).await;
    let mut app = RawApp::connect(&env.relay_url).await;
    let uuid = app
        .request(sign_frame(
            "alice",
            &key,
            vec![vote("alice", "after")],
            Some(json!(now_ms_i())),
        ))
        .await;
    let d = decision_for(env.dir.path(), &uuid).await;
    assert_eq!(d.0, "deny", "{d:?}");
    let r = app.reply(&uuid, SETTLE).await;
    assert_ne!(r.map(|r| r["cmd"].clone()), Some(json!("sign_ack")));
    assert_eq!(env.node.recorded().len(), 1, "only the first vote");
    env.stop().await;
}

/// 3. Revocation applies to every command, nonce or not.
#[tokio::test]
async fn hole3_a_revoked_session_answers_no_challenge_even_without_a_nonce() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    let exp = now_ms_i() + 3_600_000;
    let id = create_session(env.dir.path(), "alice", "bot", &key, exp).await;
    let mut app = RawApp::connect(&env.relay_url).await;
    let uuid = app
        .request(challenge_frame("alice", &key, "posting", "before", None))
        .await;
    let r = app.reply(&uuid, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["cmd"], "challenge_ack", "{r}");
    revoke_session(env.dir.path(), id).await;
    let uuid = app
        .request(challenge_frame("alice", &key, "posting", "after", None))
        .await;
    let d = decision_for(env.dir.path(), &uuid).await;
    assert_eq!(d.0, "deny", "{d:?}");
    let r = app.reply(&uuid, SETTLE).await;
    assert_ne!(r.map(|r| r["cmd"].clone()), Some(json!("challenge_ack")));
    env.stop().await;
}

/// 4. The app identity policy sees is the one recorded when the session was created: a
/// session enrolled as `bot` that renews as `admin` still gets `bot`'s rule.
#[tokio::test]
async fn hole4_renaming_the_app_does_not_choose_another_apps_rule() {
    let env = Builder {
        settings: Some(settings_with(
            SECRET,
            r#"
            [[rules]]
            id = "admin"
            apps = ["admin"]
            challenge_roles = ["active"]
            "#,
        )),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let s = env.auth(&client, "bot").await;
    let renamed = client
        .authenticate(
            "alice",
            Env::app("admin"),
            Some(ChallengeSpec {
                key_type: KeyType::Active,
                challenge: "give me an active signature".into(),
            }),
            AuthMode::ExistingKey(s.auth_key.clone()),
        )
        .await;
    assert!(
        matches!(renamed, Err(ClientError::Refused { .. })),
        "{renamed:?}"
    );
    // Renewing under another name works, but the session stays bot's.
    let renewed = client
        .authenticate(
            "alice",
            Env::app("admin"),
            None,
            AuthMode::ExistingKey(s.auth_key.clone()),
        )
        .await
        .unwrap();
    let e = client
        .challenge(&renewed, KeyType::Active, "still bot", false)
        .await;
    assert!(matches!(e, Err(ClientError::Refused { .. })), "{e:?}");
    let rows = list_sessions(env.dir.path()).await;
    assert_eq!(rows, vec![("alice".to_owned(), "bot".to_owned())]);
    // A window opened for any app does not enroll an app a rule names: whoever holds the
    // secret would pick the name, and with it the rule.
    let e = client
        .authenticate(
            "alice",
            Env::app("admin"),
            None,
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await;
    assert!(matches!(e, Err(ClientError::Refused { .. })), "{e:?}");
    open_window(env.dir.path(), "alice", Some("admin")).await;
    client
        .authenticate(
            "alice",
            Env::app("admin"),
            None,
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await
        .unwrap();
    env.stop().await;
}

/// 5. Every operation that moves value is counted and its counterparties checked: escrow
/// amounts and fees, vesting routes, another chain's assets.
#[tokio::test]
async fn hole5_value_moving_operations_are_counted_and_their_counterparties_checked() {
    let env = Builder {
        settings: Some(settings_with(
            SECRET,
            r#"
            [[rules]]
            id = "bank"
            apps = ["bank"]
            allowed_ops = ["escrow_transfer", "set_withdraw_vesting_route", "transfer"]
            key_roles = ["posting", "active"]
            transfer_to = ["bob", "dave"]
            max_transfer = ["1.000 HBD", "1.000 HIVE"]
            spend_limits = [{ max = "5.000 HBD", window_hours = 24 }]
            "#,
        )),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    // An app a rule names enrolls through a window opened for it.
    open_window(env.dir.path(), "alice", Some("bank")).await;
    let s = env.auth(&client, "bank").await;
    let escrow = |to: &str, agent: &str, hbd: &str, fee: &str| {
        json!(["escrow_transfer", {"from": "alice", "to": to, "agent": agent, "escrow_id": 1,
            "hbd_amount": hbd, "hive_amount": "0.000 HIVE", "fee": fee, "json_meta": "{}",
            "ratification_deadline": "2030-01-01T00:00:00", "escrow_expiration": "2030-02-01T00:00:00"}])
    };
    let route = |to: &str| json!(["set_withdraw_vesting_route", {"from_account": "alice", "to_account": to, "percent": 10000, "auto_vest": false}]);
    let transfer = |amount: &str| json!(["transfer", {"from": "alice", "to": "bob", "amount": amount, "memo": ""}]);
    let refused = [
        (
            "900 HBD + 50 HBD fee to carol",
            escrow("carol", "bob", "900.000 HBD", "50.000 HBD"),
            "counterparty \"carol\"",
        ),
        (
            "an agent outside transfer_to",
            escrow("bob", "carol", "0.100 HBD", "0.001 HBD"),
            "counterparty \"carol\"",
        ),
        (
            "amount + fee over max_transfer",
            escrow("bob", "dave", "0.600 HBD", "0.600 HBD"),
            "moves 1.200 HBD",
        ),
        (
            "a vesting route to carol",
            route("carol"),
            "counterparty \"carol\"",
        ),
        (
            "another chain's asset",
            transfer("0.100 TESTS"),
            "TESTS is not an asset of this chain",
        ),
    ];
    let mut app = RawApp::connect(&env.relay_url).await;
    for (what, op, reason) in refused {
        let uuid = app
            .request(sign_frame(
                "alice",
                &s.auth_key,
                vec![op],
                Some(json!(s.next_nonce().0)),
            ))
            .await;
        let d = decision_for(env.dir.path(), &uuid).await;
        assert!(d.0 == "deny" && d.2.contains(reason), "{what}: {d:?}");
    }
    // Within the rule: signed. The same transfer in HIVE is fine (the positive control of
    // the asset check).
    for op in [route("bob"), transfer("0.100 HIVE")] {
        let r = client.sign(&s, vec![op], KeyType::Active, false).await;
        assert!(matches!(r, Ok(SignResult::Signed { .. })), "{r:?}");
    }
    // Escrow amounts and fees count against the 5 HBD a day: five of 0.5 + 0.5 fill it, the
    // sixth is refused.
    for i in 0..6 {
        let r = client
            .sign(
                &s,
                // (hived wants the agent to be a third party.)
                vec![escrow("bob", "dave", "0.500 HBD", "0.500 HBD")],
                KeyType::Active,
                false,
            )
            .await;
        if i < 5 {
            assert!(matches!(r, Ok(SignResult::Signed { .. })), "{i}: {r:?}");
        } else {
            assert!(matches!(r, Err(ClientError::Refused { .. })), "{i}: {r:?}");
        }
    }
    let last = audit_last(env.dir.path()).await;
    assert!(last.2.contains("spend limit bank/HBD"), "{last:?}");
    env.stop().await;
}

/// 6. A challenge whose bytes start with the chain id could be the signing preimage of a
/// transaction (sha256(chain_id ‖ tx)): refused, whatever the policy says of challenges.
#[tokio::test]
async fn hole6_a_challenge_that_could_be_a_transaction_preimage_is_refused() {
    let chain = ChainId(*b"pksa-test-chain-0123456789abcdef");
    let env = Builder {
        chain,
        settings: Some(settings_with(
            SECRET,
            r#"
            [[rules]]
            id = "ops"
            challenge_roles = ["posting", "active"]
            "#,
        )),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let s = env.auth(&client, "ops").await;
    // A 1,000 HIVE transfer whose serialization is plain ASCII, so chain id ‖ tx is a
    // valid UTF-8 challenge with the transaction's signing digest.
    let tx = hive_chain::Transaction {
        ref_block_num: 0x2020,
        ref_block_prefix: 0x2020_2020,
        expiration: hive_chain::TimePointSec(0x7020_2020),
        operations: hive_chain::Operation::list_from_json(&[json!(["transfer", {
            "from": "alice", "to": "carol", "amount": "1000.000 HIVE", "memo": ""}])])
        .unwrap(),
        extensions: Default::default(),
    };
    let mut preimage = chain.0.to_vec();
    preimage.extend(tx.to_bytes().unwrap());
    let text = String::from_utf8(preimage).expect("an ASCII transaction");
    assert_eq!(
        <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()).as_slice(),
        tx.digest(&chain).unwrap().as_slice(),
        "signing this challenge would sign the transfer"
    );
    let r = client.challenge(&s, KeyType::Active, &text, false).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Failed { .. }) | Err(ClientError::Refused { .. })
        ),
        "{r:?}"
    );
    // Any other text is still signed.
    client
        .challenge(&s, KeyType::Active, "pksa-test-chain", false)
        .await
        .unwrap();
    env.stop().await;
}

/// 7. A request id that is not an RFC 4122 uuid is refused before any crypto: the relay
/// cannot make the account sign a POK memo over its own text.
#[tokio::test]
async fn hole7_request_ids_that_are_not_uuids_get_no_answer() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    create_session(env.dir.path(), "alice", "bot", &key, now_ms_i() + 3_600_000).await;
    // The relay speaks to the service through a second, hostile relay.
    let fake = FakeRelay::bind().await;
    let svc = build_service(
        env.dir.path(),
        &env.alice,
        &[all_roles("alice")],
        &env.node_url,
        &fake.url,
        &[],
        default_settings(&env.secret),
    )
    .await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pksa_service::run(svc.clone(), None, rx));
    let mut conn = fake.accept(1.0, 1).await;
    let relayed = |uuid: &str, text: &str| {
        let data = ChallengeReqData {
            key_type: KeyType::Posting,
            challenge: text.into(),
            decrypt: None,
            nonce: None,
        };
        encode(&RelayToPksa::ChallengeReq(
            has_protocol::messages::RelayedChallengeReq {
                account: "alice".parse().unwrap(),
                data: Encrypted::encrypt(&data, &key),
                uuid: RequestId::try_from(uuid.to_owned()).unwrap(),
                expire: UnixMillis(now_ms_i() as u64 + 60_000),
                token: None,
            },
        ))
    };
    let good = uuid::Uuid::new_v4().to_string();
    for bad in [
        "alice pays the relay 1000 HIVE",
        "00000000000000000000000000000000",
        "{00000000-0000-4000-8000-000000000000}",
    ] {
        conn.send(relayed(bad, "x")).await;
    }
    conn.send(relayed(&good, "y")).await;
    let mut seen = vec![];
    while let Some(r) = conn.recv_within(SETTLE).await {
        seen.push(r["uuid"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(seen, vec![good], "only the real uuid is answered");
    let _ = stop.send(true);
    env.stop().await;
}

/// A relay reusing a request id for another request gets neither an answer nor a decision,
/// and the request itself, delivered under its own id, is still decided (its nonce was not
/// used up).
#[tokio::test]
async fn a_reused_request_id_answers_nothing_and_loses_nothing() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    create_session(env.dir.path(), "alice", "bot", &key, now_ms_i() + 3_600_000).await;
    let fake = FakeRelay::bind().await;
    let svc = build_service(
        env.dir.path(),
        &env.alice,
        &[all_roles("alice")],
        &env.node_url,
        &fake.url,
        &[],
        default_settings(&env.secret),
    )
    .await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pksa_service::run(svc.clone(), None, rx));
    let mut conn = fake.accept(1.0, 1).await;
    let relayed = |uuid: &str, permlink: &str, nonce: u64| {
        let data = SignReqData {
            key_type: KeyType::Posting,
            ops: vec![vote("alice", permlink)],
            broadcast: false,
            nonce: Some(has_protocol::Nonce(nonce)),
        };
        encode(&RelayToPksa::SignReq(
            has_protocol::messages::RelayedSignReq {
                account: "alice".parse().unwrap(),
                data: Encrypted::encrypt(&data, &key),
                uuid: RequestId::try_from(uuid.to_owned()).unwrap(),
                expire: UnixMillis(now_ms_i() as u64 + 60_000),
                token: None,
            },
        ))
    };
    let (u1, u2) = (rid("first"), rid("second"));
    let n = now_ms_i() as u64;
    conn.send(relayed(&u1, "one", n)).await;
    let a = conn.recv().await.unwrap();
    assert_eq!(
        (a["cmd"].as_str(), a["uuid"].as_str()),
        (Some("sign_ack"), Some(u1.as_str()))
    );
    // The next request under the first one's id: nothing.
    conn.send(relayed(&u1, "two", n + 1)).await;
    // The same request under its own id: decided and signed.
    conn.send(relayed(&u2, "two", n + 1)).await;
    let b = conn.recv().await.unwrap();
    assert_eq!(
        (b["cmd"].as_str(), b["uuid"].as_str()),
        (Some("sign_ack"), Some(u2.as_str()))
    );
    assert_eq!(conn.recv_within(SETTLE).await, None, "u1 answered once");
    assert_eq!(
        b["data"]["operations"][0][1]["permlink"], "two",
        "the second request's own operations"
    );
    let _ = stop.send(true);
    env.stop().await;
}

/// 8. Nonces are integer milliseconds, not far ahead of the clock: a float, a nonce past
/// 2^53 or a day ahead is refused and does not lock the session.
#[tokio::test]
async fn nonces_must_be_integers_and_not_far_ahead() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let mut app = RawApp::connect(&env.relay_url).await;
    let now = now_ms_i();
    for bad in [
        json!(now as f64 + 0.5),
        json!(9_007_199_254_740_993u64),
        json!(now + 86_400_000),
    ] {
        let uuid = app
            .request(sign_frame(
                "alice",
                &s.auth_key,
                vec![vote("alice", "n")],
                Some(bad.clone()),
            ))
            .await;
        let r = app.reply(&uuid, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r["cmd"], "sign_err", "{bad}: {r}");
    }
    // The session still works with the clock's nonce.
    client
        .sign(&s, vec![vote("alice", "ok")], KeyType::Posting, true)
        .await
        .unwrap();
    assert_eq!(env.node.recorded().len(), 1);
    env.stop().await;
}

/// 8. A transaction that needs no authority would come back with no signature: refused.
#[tokio::test]
async fn a_transaction_needing_no_authority_is_refused() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let op = json!(["custom_json", {"required_auths": [], "required_posting_auths": [], "id": "x", "json": "{}"}]);
    let r = client.sign(&s, vec![op], KeyType::Posting, false).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Failed { .. }) | Err(ClientError::Refused { .. })
        ),
        "{r:?}"
    );
    env.stop().await;
}

/// Two different requests with the same operations make two different transactions, both
/// on chain: neither is reported broadcast on the strength of the other.
#[tokio::test]
async fn identical_operations_in_the_same_second_make_distinct_transactions() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let ops = vec![vote("alice", "same")];
    let (a, b) = tokio::join!(
        client.sign(&s, ops.clone(), KeyType::Posting, true),
        client.sign(&s, ops.clone(), KeyType::Posting, true)
    );
    let id = |r: Result<SignResult, ClientError>| match r.unwrap() {
        SignResult::Broadcast { tx_id, .. } => tx_id,
        other => panic!("{other:?}"),
    };
    let (a, b) = (id(a), id(b));
    assert_ne!(a, b);
    let recorded: Vec<String> = env.node.recorded().iter().map(|r| r.id.clone()).collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.contains(&a) && recorded.contains(&b));
    env.stop().await;
}

/// Apps get fixed texts by error kind; the operator's node URL and the transport error stay
/// in the service's log.
#[tokio::test]
async fn internal_error_text_does_not_reach_apps() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let env = Builder {
        hive_api: Some(url.clone()),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let e = client
        .sign(&s, vec![vote("alice", "down")], KeyType::Posting, true)
        .await
        .unwrap_err();
    let ClientError::Failed { message, .. } = e else {
        panic!("{e:?}")
    };
    assert!(
        !message.contains("127.0.0.1") && !message.contains("http"),
        "{message}"
    );
    env.stop().await;
}

/// One rule for every command: a policy denial is a nack when the operator asks for
/// refusals (`*_req_reject`), silence otherwise — for auth_req as for challenge_req.
#[tokio::test]
async fn a_policy_denial_is_answered_alike_for_every_command() {
    for reject in [false, true] {
        let mut settings = default_settings(&has_protocol::AuthReqSecret::new(SECRET));
        settings.auth_req_reject = reject;
        settings.challenge_req_reject = reject;
        let env = Builder {
            settings: Some(settings),
            ..Default::default()
        }
        .start()
        .await;
        let client = env.client().await;
        let s = env.auth(&client, "game").await;
        let mut app = RawApp::connect(&env.relay_url).await;
        let auth = app
            .request(auth_frame(
                "alice",
                &AuthKey::generate(),
                "game",
                Some((KeyType::Active, "active please")),
                true,
            ))
            .await;
        let challenge = app
            .request(challenge_frame(
                "alice",
                &s.auth_key,
                "active",
                "active please",
                Some(now_ms_i() as u64),
            ))
            .await;
        for (uuid, cmd) in [(auth, "auth"), (challenge, "challenge")] {
            assert_eq!(decision_for(env.dir.path(), &uuid).await.0, "deny");
            let r = app.reply(&uuid, SETTLE).await.map(|r| r["cmd"].clone());
            let expected = reject.then(|| json!(format!("{cmd}_nack")));
            assert_eq!(r, expected, "{cmd}_req_reject = {reject}");
        }
        env.stop().await;
    }
}
