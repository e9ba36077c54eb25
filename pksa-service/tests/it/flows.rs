//! Every flow over loopback: auth (secret, enrollment, renewal, operator sessions), sign
//! (broadcast, sign-only, policy, nonces, spend limits across restarts), challenge, re-delivery.

use std::time::Duration;

use has_client::{AuthMode, ClientError, SignResult};
use has_crypto::{PublicKey, Signature};
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, KeyType, RelayToPksa, RequestId, UnixMillis};
use pksa_service::policy::PolicyConfig;
use pksa_service::state::{now_ms, sessions};
use serde_json::json;

use crate::env::*;

#[tokio::test]
async fn auth_with_secret_challenge_and_renewal() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let spec = ChallengeSpec {
        key_type: KeyType::Posting,
        challenge: "login:alice:1".into(),
    };
    let s = client
        .authenticate(
            "alice",
            Env::app("game"),
            Some(spec),
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        s.pubkey.as_deref(),
        Some(env.alice.keys[1].public_key().to_string().as_str())
    );
    assert!(s.token.is_some(), "a 0.8 token is returned");
    let first = s.expire;
    // Re-authentication with the same key renews, never beyond the maximum.
    let again = client
        .authenticate(
            "alice",
            Env::app("game"),
            None,
            AuthMode::ExistingKey(s.auth_key.clone()),
        )
        .await
        .unwrap();
    assert!(again.expire >= first);
    let max = env
        .svc
        .store
        .call(|c| sessions::list(c, Some("alice")))
        .await
        .unwrap()[0]
        .max_expire;
    assert!(again.expire.0 as i64 <= max);
    env.stop().await;
}

#[tokio::test]
async fn no_enrollment_window_means_no_new_session() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let e = client
        .authenticate(
            "alice",
            Env::app("game"),
            None,
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    // The window opens (as `pksa-service enroll` does): now it works.
    cli_store(env.dir.path())
        .call(|c| {
            pksa_service::state::enrollments::open(
                c,
                "alice",
                Some("game"),
                now_ms() + 60_000,
                None,
            )
        })
        .await
        .unwrap();
    let other = client
        .authenticate(
            "alice",
            Env::app("other"),
            None,
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await;
    assert!(other.is_err(), "the window is for the app game only");
    client
        .authenticate(
            "alice",
            Env::app("game"),
            None,
            AuthMode::ServiceSecret(env.secret.clone()),
        )
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test]
async fn operator_session_signs_without_authentication_and_revocation_stops_it() {
    let env = Builder {
        enroll: false,
        ..Default::default()
    }
    .start()
    .await;
    let key = AuthKey::generate();
    let exp = now_ms() + 86_400_000;
    let id = create_session(env.dir.path(), "alice", "bot", &key, exp).await;
    let client = env.client().await;
    let session = has_client::Session::new(
        "alice".parse().unwrap(),
        key.clone(),
        UnixMillis(exp as u64),
        None,
        None,
    );
    let r = client
        .sign(&session, vec![vote("alice", "op")], KeyType::Posting, true)
        .await
        .unwrap();
    assert!(matches!(r, SignResult::Broadcast { .. }));
    assert_eq!(env.node.recorded().len(), 1);
    cli_store(env.dir.path())
        .call(move |c| sessions::revoke(c, id))
        .await
        .unwrap();
    // The revocation reaches the running service through the store.
    let e = client
        .sign(&session, vec![vote("alice", "op2")], KeyType::Posting, true)
        .await;
    assert!(e.is_err(), "{e:?}");
    assert_eq!(env.node.recorded().len(), 1);
    env.stop().await;
}

/// Sign requests without a nonce (hive-auth-client sends none): accepted only from apps whose
/// rule says `sign_without_nonce`, and the same ciphertext is signed once in the session's
/// life: a replay under another request id gets the first answer while it is kept, and a
/// refusal after (never a second broadcast).
#[tokio::test]
async fn sign_requests_without_a_nonce_only_where_allowed_and_never_twice() {
    let mut settings = default_settings(&has_protocol::AuthReqSecret::new(
        "e2e-secret-0123456789abcdef",
    ));
    settings.sign_req_reject = true;
    settings.policy = toml::from_str(
        r#"
        [[rules]]
        id = "lib"
        apps = ["lib"]
        sign_without_nonce = true
        allowed_ops = ["vote", "transfer"]
        key_roles = ["posting", "active"]
        spend_limits = [{ max = "1.000 HIVE", window_hours = 24 }]
        "#,
    )
    .unwrap();
    let env = Builder {
        settings: Some(settings),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let game = env.auth(&client, "game").await;
    // An app a rule names enrolls through a window for that app.
    env.svc
        .store
        .call(|c| {
            pksa_service::state::enrollments::open(
                c,
                "alice",
                Some("lib"),
                now_ms() + 600_000,
                None,
            )
        })
        .await
        .unwrap();
    let lib = env.auth(&client, "lib").await;
    let frame = |s: &has_client::Session, permlink: &str| {
        let data =
            json!({"key_type": "posting", "ops": [vote("alice", permlink)], "broadcast": true});
        app_frame("sign_req", "alice", &s.auth_key, &data.to_string())
    };
    let mut app = RawApp::connect(&env.relay_url).await;
    let request = frame(&lib, "nonceless");
    let uuid = app.request(request.clone()).await;
    let first = app.reply(&uuid, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["cmd"], "sign_ack", "{first}");
    assert_eq!(env.node.recorded().len(), 1);
    // The same ciphertext again (a replaying relay): the first answer, no second broadcast.
    let uuid2 = app.request(request.clone()).await;
    assert_ne!(uuid, uuid2);
    let again = app.reply(&uuid2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (&again["cmd"], &again["data"]),
        (&first["cmd"], &first["data"])
    );
    assert_eq!(env.node.recorded().len(), 1);
    // Once the answers are gone (retention), the data is still used: refused.
    env.svc
        .store
        .call(|c| Ok(c.execute("DELETE FROM answers", [])?))
        .await
        .unwrap();
    let uuid3 = app.request(request).await;
    let refused = app.reply(&uuid3, Duration::from_secs(10)).await.unwrap();
    assert_eq!(refused["cmd"], "sign_err", "{refused}");
    let e: ReplyError = serde_json::from_value(refused.clone()).unwrap();
    assert_eq!(e.message(&lib.auth_key), NONCE_ALREADY_USED);
    assert_eq!(env.node.recorded().len(), 1);
    // Refused (here by the spend limit): the data is used up all the same, so the relay
    // cannot have it decided again later, once the limit's window has passed.
    let transfer = |s: &has_client::Session, amount: &str| {
        let data = json!({"key_type": "active", "broadcast": false,
            "ops": [["transfer", {"from": "alice", "to": "bob", "amount": amount, "memo": ""}]]});
        app_frame("sign_req", "alice", &s.auth_key, &data.to_string())
    };
    let u = app.request(transfer(&lib, "1.000 HIVE")).await;
    let r = app.reply(&u, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["cmd"], "sign_ack", "{r}");
    let over = transfer(&lib, "0.500 HIVE");
    let u = app.request(over.clone()).await;
    let r = app.reply(&u, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["cmd"], "sign_nack", "{r}");
    env.svc
        .store
        .call(|c| Ok(c.execute_batch("DELETE FROM answers; DELETE FROM spend;")?))
        .await
        .unwrap();
    let u = app.request(over).await;
    let r = app.reply(&u, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["cmd"], "sign_err", "{r}");
    let e: ReplyError = serde_json::from_value(r).unwrap();
    assert_eq!(e.message(&lib.auth_key), NONCE_ALREADY_USED);
    // The same ciphertext with its padding stripped is the same request, not a new one.
    // (The length decides the padding: the first permlink length that gives some.)
    let padded = (1..64)
        .map(|n| frame(&lib, &"p".repeat(n)))
        .find(|f| f["data"].as_str().unwrap().ends_with('='))
        .unwrap();
    let text = padded["data"].as_str().unwrap().to_owned();
    let u = app.request(padded.clone()).await;
    let first = app.reply(&u, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["cmd"], "sign_ack", "{first}");
    let broadcasts = env.node.recorded().len();
    let mut stripped = padded.clone();
    stripped["data"] = json!(text.trim_end_matches('='));
    let u = app.request(stripped).await;
    let again = app.reply(&u, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again["data"], first["data"]);
    assert_eq!(env.node.recorded().len(), broadcasts);
    // Another app's rule does not allow it.
    let uuid4 = app.request(frame(&game, "other")).await;
    let r = app.reply(&uuid4, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["cmd"], "sign_err", "{r}");
    let e: ReplyError = serde_json::from_value(r).unwrap();
    assert_eq!(e.message(&game.auth_key), "nonce is required");
    env.stop().await;
}

/// Operations hived would refuse are refused before any signature, with the rule they break;
/// the dry-run node refuses them too when they come signed (it validates like hived).
#[tokio::test]
async fn operations_hived_would_refuse_are_never_signed() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let cases = [
        (
            json!(["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 20000}]),
            "invalid operation: vote: weight: more than 100 % (10000)",
        ),
        (
            json!(["vote", {"voter": "alice", "author": "bob", "permlink": "p".repeat(300), "weight": 100}]),
            "invalid operation: vote: permlink: longer than 255 bytes",
        ),
        (
            json!(["custom_json", {"required_auths": [], "required_posting_auths": ["alice"], "id": "x", "json": "x".repeat(100 * 1024)}]),
            "invalid operation: custom_json: json: longer than 8192 bytes",
        ),
        (
            json!(["custom_json", {"required_auths": [], "required_posting_auths": ["alice"], "id": "x", "json": "not json"}]),
            "invalid operation: custom_json: json: not valid JSON",
        ),
    ];
    for (op, text) in cases {
        for broadcast in [true, false] {
            let e = client
                .sign(&s, vec![op.clone()], KeyType::Posting, broadcast)
                .await
                .unwrap_err();
            match e {
                ClientError::Failed { message, .. } => assert_eq!(message, text),
                other => panic!("{other}"),
            }
        }
        // Signed anyway (by hand), the dry-run node refuses it like hived.
        let tx = hive_chain::tx::Transaction {
            ref_block_num: 0,
            ref_block_prefix: 0,
            expiration: hive_chain::TimePointSec(0),
            operations: hive_chain::ops::Operation::list_from_json(&[op]).unwrap(),
            extensions: Default::default(),
        };
        let signed = tx
            .sign(&hive_chain::ChainId::MAINNET, &[&env.alice.keys[1]])
            .unwrap();
        let rpc = pksa_service::daemon::rpc_client(vec![env.node_url.clone()]).unwrap();
        let err = rpc.broadcast(&signed).await.unwrap_err().to_string();
        assert!(err.contains("Assert Exception"), "{err}");
    }
    assert!(env.node.recorded().is_empty());
    env.stop().await;
}

/// A sign-only answer carries the operations exactly as the app wrote them: members in the
/// app's order (not sorted), its own spellings, byte for byte, so an app comparing the JSON
/// text it sent with what it got back finds them equal.
#[tokio::test]
async fn sign_only_answers_carry_the_operations_as_the_app_wrote_them() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let ops = r#"[["vote",{"weight":100,"voter":"alice","permlink":"p","author":"bob"}],["custom_json",{"required_posting_auths":["alice"],"required_auths":[],"json":"{\"z\":1,\"a\":2}","id":"x"}]]"#;
    let data = format!(
        r#"{{"key_type":"posting","ops":{ops},"broadcast":false,"nonce":{}}}"#,
        s.next_nonce().0
    );
    let mut app = RawApp::connect(&env.relay_url).await;
    let uuid = app
        .request(app_frame("sign_req", "alice", &s.auth_key, &data))
        .await;
    let reply = app.reply(&uuid, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply["cmd"], "sign_ack", "{reply}");
    assert_eq!(reply["data"]["operations"].to_string(), ops);
    // And it is the transaction that was signed.
    let tx: hive_chain::SignedTransaction = serde_json::from_value(reply["data"].clone()).unwrap();
    assert_eq!(
        tx.signers(&hive_chain::ChainId::MAINNET).unwrap(),
        vec![*env.alice.keys[1].public_key()]
    );
    env.stop().await;
}

#[tokio::test]
async fn sign_broadcast_and_sign_only_are_verified_on_chain() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    match client
        .sign(&s, vec![vote("alice", "a")], KeyType::Posting, true)
        .await
        .unwrap()
    {
        SignResult::Broadcast { tx_id, .. } => assert_eq!(env.node.recorded()[0].id, tx_id),
        other => panic!("{other:?}"),
    }
    match client
        .sign(&s, vec![vote("alice", "b")], KeyType::Posting, false)
        .await
        .unwrap()
    {
        SignResult::Signed {
            transaction,
            signers,
            ..
        } => {
            assert_eq!(signers, vec![*env.alice.keys[1].public_key()]);
            // The node accepts the returned transaction as is.
            let rpc = pksa_service::daemon::rpc_client(vec![env.node_url.clone()]).unwrap();
            rpc.broadcast(&transaction).await.unwrap();
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.node.recorded().len(), 2);
    env.stop().await;
}

#[tokio::test]
async fn policy_denies_active_by_default_and_allows_by_rule_with_persisted_spend_limit() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "bank").await;
    let transfer =
        |amt: &str| json!(["transfer", {"from": "alice", "to": "bob", "amount": amt, "memo": ""}]);
    let e = client
        .sign(&s, vec![transfer("1.000 HIVE")], KeyType::Active, true)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    // Now a rule: transfers to bob, 2 HIVE per 24 h.
    let policy: PolicyConfig = toml::from_str(
        r#"
        [[rules]]
        id = "bank"
        apps = ["bank"]
        allowed_ops = ["transfer"]
        key_roles = ["active"]
        transfer_to = ["bob"]
        spend_limits = [{ max = "2.000 HIVE", window_hours = 24 }]
    "#,
    )
    .unwrap();
    let mut settings = default_settings(&env.secret);
    settings.policy = policy.clone();
    env.svc.set_settings(settings.clone());
    client
        .sign(&s, vec![transfer("1.500 HIVE")], KeyType::Active, true)
        .await
        .unwrap();
    let e = client
        .sign(&s, vec![transfer("1.000 HIVE")], KeyType::Active, true)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    // Restart the service on the same state: the window remembers what was spent.
    let dir = env.stop().await;
    let env2 = Builder {
        dir: Some(dir),
        settings: Some(settings),
        ..Default::default()
    }
    .start()
    .await;
    let client2 = env2.client().await;
    // bank has a rule of its own now: it enrolls through a window opened for it.
    open_window(env2.dir.path(), "alice", Some("bank")).await;
    let s2 = env2.auth(&client2, "bank").await;
    let e = client2
        .sign(&s2, vec![transfer("0.600 HIVE")], KeyType::Active, true)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    client2
        .sign(&s2, vec![transfer("0.500 HIVE")], KeyType::Active, true)
        .await
        .unwrap();
    let sealer = env2.svc.store.sealer().clone();
    let audit = env2
        .svc
        .store
        .call(move |c| pksa_service::state::audit::verify(c, &sealer))
        .await
        .unwrap();
    assert!(matches!(
        audit,
        pksa_service::state::audit::Verdict::Intact { .. }
    ));
    env2.stop().await;
}

#[tokio::test]
async fn nonces_are_strict_and_concurrent_requests_keep_their_order() {
    let env = Builder::default().start().await;
    let client = std::sync::Arc::new(env.client().await);
    let s = std::sync::Arc::new(env.auth(&client, "game").await);
    client
        .sign(&s, vec![vote("alice", "n1")], KeyType::Posting, false)
        .await
        .unwrap();
    let replay = UnixMillis(s.last_nonce().0);
    let e = client
        .sign_with_nonce(
            &s,
            vec![vote("alice", "n2")],
            KeyType::Posting,
            false,
            replay,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Failed { message, .. } if message.contains("already used")),
        "{e}"
    );
    // 200 concurrent requests over one session: all accepted, in order.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (c, s) = (client.clone(), s.clone());
        tasks.spawn(async move {
            c.challenge(&s, KeyType::Posting, &format!("c{i}"), false)
                .await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 200);
    env.stop().await;
}

#[tokio::test]
async fn challenges_sign_and_decrypt_only_when_allowed() {
    let mut settings = default_settings(&has_protocol::AuthReqSecret::new(
        "e2e-secret-0123456789abcdef",
    ));
    settings.challenge_decrypt = true;
    settings.policy = toml::from_str(
        "[[rules]]\nid = \"memo\"\nmemo_decrypt = true\nchallenge_roles = [\"memo\", \"posting\"]",
    )
    .unwrap();
    let env = Builder {
        settings: Some(settings),
        ..Default::default()
    }
    .start()
    .await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    let c = client
        .challenge(&s, KeyType::Posting, "sign me", false)
        .await
        .unwrap();
    let sig = Signature::from_hex(&c.challenge).unwrap();
    assert_eq!(
        sig.recover_buffer(b"sign me").unwrap(),
        c.pubkey.parse::<PublicKey>().unwrap()
    );
    // hive-js-identical bytes.
    assert_eq!(
        c.challenge,
        env.alice.keys[1].sign_buffer(b"sign me").to_hex()
    );
    let sender = has_crypto::PrivateKey::from_seed(b"someone").unwrap();
    let memo = has_crypto::memo::encode_with_nonce(
        &sender,
        env.alice.keys[0].public_key(),
        "#the secret",
        5,
    );
    let d = client
        .challenge(&s, KeyType::Memo, &memo, true)
        .await
        .unwrap();
    assert_eq!(d.challenge, "#the secret");
    // Plain text is not a memo (memo::decode hands it back unchanged, as hive-js does): a
    // decrypt request for it is refused, never echoed.
    let e = client
        .challenge(&s, KeyType::Memo, "plain words", true)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not an encrypted memo") || matches!(e, ClientError::Failed { .. }),
        "{e}"
    );
    let e = client
        .challenge(&s, KeyType::Active, "x", false)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    env.stop().await;
}

/// A request delivered twice (same uuid), and the same request through a second server
/// (another uuid): decided once, one broadcast, every delivery answered identically.
#[tokio::test]
async fn redelivery_is_answered_from_the_store_and_never_broadcast_twice() {
    let fake1 = FakeRelay::bind().await;
    let fake2 = FakeRelay::bind().await;
    let env_builder = Builder {
        extra_servers: vec![],
        ..Default::default()
    };
    // The service talks only to the two fake relays here.
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let node =
        hive_chain::dryrun::DryRunNode::new(hive_chain::ChainId::MAINNET, vec![alice.account()]);
    let (node_url, _) = hive_chain::dryrun::spawn(node.clone(), 0).await.unwrap();
    let svc = build_service(
        dir.path(),
        &alice,
        &env_builder.keystore_accounts,
        &node_url,
        &fake1.url,
        std::slice::from_ref(&fake2.url),
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
    let task = tokio::spawn(pksa_service::run(svc.clone(), None, rx));
    let mut c1 = fake1.accept(1.0, 1).await;
    let mut c2 = fake2.accept(1.0, 1).await;

    let data = SignReqData {
        key_type: KeyType::Posting,
        ops: vec![vote("alice", "once")],
        broadcast: true,
        nonce: Some(has_protocol::Nonce(now_ms() as u64)),
    };
    // A sign_req as the relay forwards it, under the given uuid. Re-deliveries carry the very
    // same ciphertext.
    let relayed = |enc: &Encrypted<SignReqData>, uuid: &str| {
        encode(&RelayToPksa::SignReq(RelayedSignReq {
            account: "alice".parse().unwrap(),
            data: enc.clone(),
            uuid: RequestId::try_from(uuid.to_owned()).unwrap(),
            expire: UnixMillis(now_ms() as u64 + 60_000),
            token: None,
        }))
    };
    let enc = Encrypted::encrypt(&data, &key);
    c1.send(relayed(&enc, &rid("u-1"))).await;
    let a1 = c1.recv().await.unwrap();
    assert_eq!(a1["cmd"], "sign_ack");
    assert_eq!(
        a1["broadcast"], true,
        "broadcast comes from the decrypted request (reference bug 7.2.1)"
    );
    c1.check_pok(&a1, &alice);
    c1.send(relayed(&enc, &rid("u-1"))).await; // re-delivered
    let a2 = c1.recv().await.unwrap();
    c2.send(relayed(&enc, &rid("u-2"))).await; // the same request through the other server
    let a3 = c2.recv().await.unwrap();
    assert_eq!(a2["data"], a1["data"]);
    assert_eq!(a3["data"], a1["data"]);
    assert_eq!(a3["uuid"], rid("u-2"));
    c2.check_pok(&a3, &alice);
    assert_eq!(node.recorded().len(), 1, "one signature, one broadcast");

    // The same new request through both servers at once: decided once, answered on each.
    let data = SignReqData {
        nonce: Some(has_protocol::Nonce(now_ms() as u64 + 1)),
        ops: vec![vote("alice", "twice-at-once")],
        ..data
    };
    let enc = Encrypted::encrypt(&data, &key);
    c1.send(relayed(&enc, &rid("u-3"))).await;
    c2.send(relayed(&enc, &rid("u-4"))).await;
    let (b1, b2) = (c1.recv().await.unwrap(), c2.recv().await.unwrap());
    assert_eq!(b1["cmd"], "sign_ack");
    assert_eq!(b1["data"], b2["data"]);
    assert_eq!(
        node.recorded().len(),
        2,
        "one more signature, one more broadcast"
    );
    // Nothing is left behind by requests that are done.
    assert_eq!(svc.inflight_len(), 0);
    let _ = stop.send(true);
    let _ = task.await;
}

/// SIGHUP / `pksa-service reload`: a bad file is refused and the old policy stays; a good
/// one replaces it.
#[tokio::test]
async fn reload_keeps_the_old_config_on_error() {
    let env = Builder::default().start().await;
    let path = env.dir.path().join("pksa.toml");
    let base = "has_servers = [\"ws://127.0.0.1:1\"]\nkeystore = \"k.age\"\nauth_req_secret = \"e2e-secret-0123456789abcdef\"\n";
    std::fs::write(&path, format!("{base}[[policy.rules]]\nid = \"first\"\n")).unwrap();
    let started = pksa_service::config::Config::load(&path).unwrap();
    let running = pksa_service::cli::Running::new(&started, false, false);
    pksa_service::cli::reload(&env.svc, &path, &running);
    assert_eq!(env.svc.settings().policy.rules[0].id, "first");
    std::fs::write(
        &path,
        format!("{base}[[policy.rules]]\nid = \"second\"\nkey_roles = [\"owner\"]\n"),
    )
    .unwrap();
    pksa_service::cli::reload(&env.svc, &path, &running);
    assert_eq!(
        env.svc.settings().policy.rules[0].id,
        "first",
        "an invalid policy is refused"
    );
    std::fs::write(&path, "not toml [[[").unwrap();
    pksa_service::cli::reload(&env.svc, &path, &running);
    assert_eq!(env.svc.settings().policy.rules[0].id, "first");
    std::fs::write(&path, format!("{base}[[policy.rules]]\nid = \"third\"\n")).unwrap();
    pksa_service::cli::reload(&env.svc, &path, &running);
    assert_eq!(env.svc.settings().policy.rules[0].id, "third");
    // What a reload cannot apply is named; what it can is not.
    let now = |text: &str| {
        std::fs::write(&path, text).unwrap();
        pksa_service::config::Config::load(&path).unwrap()
    };
    assert!(
        pksa_service::cli::restart_needed(
            &running,
            &now(&format!("{base}session_lifetime_days = 3\n"))
        )
        .is_empty()
    );
    let changed = now(
        "has_servers = [\"ws://127.0.0.1:2\"]\nhive_api = [\"http://127.0.0.1:3/\"]\nkeystore = \"k.age\"\nauth_req_secret = \"e2e-secret-0123456789abcdef\"\nmetrics_listen = \"127.0.0.1:9108\"\n[log]\nformat = \"json\"\n",
    );
    assert_eq!(
        pksa_service::cli::restart_needed(&running, &changed),
        ["has_servers", "hive_api", "log.format", "metrics_listen"]
    );
    // A key added to the keystore since the start is read at the next start only.
    let keystore = env.dir.path().join("k.age");
    std::fs::write(&keystore, "v1").unwrap();
    let running = pksa_service::cli::Running::new(&now(base), false, false);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&keystore)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(
        pksa_service::cli::restart_needed(&running, &now(base)),
        ["the keys in the keystore"]
    );
    env.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let env = Builder::default().start().await;
    let client = env.client().await;
    let s = env.auth(&client, "game").await;
    client
        .sign(&s, vec![vote("alice", "m")], KeyType::Posting, true)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pksa_service::daemon::health::serve(
        listener,
        env.svc.clone(),
        rx,
    ));
    let m = http_get(addr, "/metrics").await;
    assert!(
        m.contains("pksa_decisions_total{cmd=\"sign_req\",decision=\"approve\"} 1"),
        "{m}"
    );
    assert!(m.contains("pksa_server_connected{server=\""));
    assert!(m.contains("pksa_broadcasts_total{result=\"ok\"} 1"));
    assert!(m.contains("pksa_node_calls_total{node=\""));
    // The broadcast's latency is a whole histogram, and the text reads as a scraper reads it.
    assert!(
        m.contains("pksa_broadcast_latency_seconds_count 1")
            && m.contains("pksa_broadcast_latency_seconds_bucket{le=\"+Inf\"} 1"),
        "{m}"
    );
    let body = m.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(has_relay::metrics::check_exposition(body), Ok(()), "{body}");
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let r = http_get(addr, "/readyz").await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("ready"), "{r}");
    env.stop().await;
}

/// Requests that find the head-block cache stale together make one node call and share its
/// block; when that call fails, they share the failure instead of each asking a dead node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_block_fetch_is_shared() {
    let env = Builder::default().start().await;
    let method = "condenser_api.get_dynamic_global_properties";
    let before = env.node.calls(method);
    let fetch_all = |svc: std::sync::Arc<pksa_service::Service>| async move {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.head_block().await })
            })
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let got = fetch_all(env.svc.clone()).await;
    let first = got[0].clone().unwrap();
    assert!(got.iter().all(|h| h.as_ref().ok() == Some(&first)));
    assert_eq!(
        env.node.calls(method) - before,
        1,
        "one node call for 32 requests"
    );

    // A node that accepts and hangs up: every request fails, with one fetch's attempts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let svc = build_service(
        dir.path(),
        &env.alice,
        &[("alice".into(), vec![has_crypto::KeyRole::Posting])],
        &url,
        &env.relay_url,
        &[],
        default_settings(&env.secret),
    )
    .await;
    let got = fetch_all(svc).await;
    assert!(got.iter().all(|r| r.is_err()));
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // One fetch tries the node list twice (RpcOptions::default().rounds); 32 separate
    // fetches would make 64 connections.
    assert!(
        (1..=2).contains(&n),
        "{n} connections for 32 waiting requests"
    );
}
