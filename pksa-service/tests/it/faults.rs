//! Fault tests: relay restarts during traffic, SIGKILL of the service during a sign load,
//! and a scan of every log for secrets.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use has_client::{AuthMode, HasClient, SignResult};
use has_crypto::{KeyRole, SecretString};
use has_protocol::{AuthKey, KeyType, UnixMillis};
use pksa_service::keystore::KeyStore;
use pksa_service::state::{self, Sealer, Store, enrollments, now_ms, sessions};

use crate::env::*;

/// The relay is killed and restarted 20 times while an app keeps sending challenges: the
/// service re-registers every time, and no request is ever answered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restarted_20_times_during_traffic() {
    let mut env = Builder::default().start().await;
    let session = {
        let c = env.client().await;
        Arc::new(env.auth(&c, "game").await)
    };
    let status = env.svc.servers[0].1.clone();
    let mut recover = vec![];
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut ok_total = 0;
    for round in 0..20 {
        // Traffic on the current relay.
        let client = HasClient::connect(&env.relay_url).await.unwrap();
        for i in 0..5 {
            match client
                .challenge(&session, KeyType::Posting, &format!("r{round}-{i}"), false)
                .await
            {
                Ok(r) => {
                    *answered.entry(r.uuid.to_string()).or_default() += 1;
                    ok_total += 1;
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        // Kill the relay mid-traffic (a request in flight is simply lost with the socket).
        let in_flight = {
            let s = session.clone();
            tokio::spawn(async move {
                client
                    .challenge(&s, KeyType::Posting, "in flight", false)
                    .await
            })
        };
        let relay = env.relay.take().unwrap();
        let reconnects_before = status.reconnects.load(std::sync::atomic::Ordering::Relaxed);
        relay.shutdown().await.unwrap();
        let _ = in_flight.await;
        let relay = relay_on(
            env.relay_addr,
            env.dir.path(),
            &[env.alice.account()],
            Duration::from_secs(10),
        )
        .await;
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if status.reconnects.load(std::sync::atomic::Ordering::Relaxed) > reconnects_before
                    && status.registered.load(std::sync::atomic::Ordering::Relaxed) > 0
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the service did not re-register"));
        recover.push(t0.elapsed());
        env.relay = Some(relay);
    }
    assert!(
        answered.values().all(|n| *n == 1),
        "every uuid answered once"
    );
    assert_eq!(ok_total, 100);
    recover.sort();
    eprintln!(
        "relay restarts: 20, re-registered every time; time to recover min {:?} median {:?} max {:?}",
        recover[0], recover[10], recover[19]
    );
    env.stop().await;
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_service(dir: &std::path::Path, log: &std::path::Path) -> Killer {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Killer(
        Command::new(env!("CARGO_BIN_EXE_pksa-service"))
            .args(["run", "--config", &dir.join("pksa.toml").to_string_lossy()])
            .env("PKSA_TEST_PASSPHRASE", "kill-test-passphrase")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The service is killed with SIGKILL in the middle of a broadcast load and restarted: no
/// session or nonce is lost, no transaction is broadcast twice (the dry-run node's record),
/// and no log line contains a key, an auth_key or the auth_req_secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sign_load_loses_nothing_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestAccount::new("alice");
    let node =
        hive_chain::dryrun::DryRunNode::new(hive_chain::ChainId::MAINNET, vec![alice.account()]);
    let (node_url, _) = hive_chain::dryrun::spawn(node.clone(), 0).await.unwrap();
    let relay = relay_on(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        &[alice.account()],
        Duration::from_secs(30),
    )
    .await;
    let secret = "kill-test-auth-req-secret-0123456789";
    let mut ks = KeyStore::new();
    for (i, r) in [KeyRole::Memo, KeyRole::Posting, KeyRole::Active]
        .into_iter()
        .enumerate()
    {
        ks.add("alice", r, alice.keys[i].clone()).unwrap();
    }
    ks.save(
        &dir.path().join("keystore.age"),
        &SecretString::from("kill-test-passphrase"),
        Some(4),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pksa.toml"),
        format!(
            "pksa_name = \"kill-test\"\nhas_servers = [\"{}\"]\nhive_api = [\"{node_url}\"]\nkeystore = \"keystore.age\"\nkeystore_passphrase = \"env:PKSA_TEST_PASSPHRASE\"\nstate = \"state.sqlite\"\nauth_req_secret = \"{secret}\"\n",
            relay.url
        ),
    )
    .unwrap();
    {
        let store = Store::open(
            &dir.path().join("state.sqlite"),
            Sealer::new(ks.state_key().clone()),
            state::Sync::Full,
        )
        .unwrap();
        store
            .call(|c| enrollments::open(c, "alice", None, now_ms() + 600_000, None))
            .await
            .unwrap();
    }
    let log = dir.path().join("service.log");
    let mut service = spawn_service(dir.path(), &log);
    let client = Arc::new(HasClient::connect(&relay.url).await.unwrap());
    let app = || Env::app("loader");
    // Ready = authentication succeeds.
    let session = Arc::new(loop {
        match client
            .authenticate(
                "alice",
                app(),
                None,
                AuthMode::ServiceSecret(has_protocol::AuthReqSecret::new(secret)),
            )
            .await
        {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    });
    let auth_key: AuthKey = session.auth_key.clone();

    // Broadcast load; kill after 40 acknowledged broadcasts. The loader records the exact
    // nonce of every acknowledged request.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let mut load = tokio::task::JoinSet::new();
    {
        let (c, s, acked) = (client.clone(), session.clone(), acked.clone());
        load.spawn(async move {
            for i in 0..100_000 {
                let permlink = format!("k-{i}");
                let nonce = s.next_nonce();
                match c
                    .sign_with_nonce(
                        &s,
                        vec![vote("alice", &permlink)],
                        KeyType::Posting,
                        true,
                        nonce,
                    )
                    .await
                {
                    Ok(SignResult::Broadcast { .. }) => {
                        acked.lock().unwrap().push((permlink, nonce.0))
                    }
                    _ => break,
                }
            }
        });
    }
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    service.0.kill().unwrap(); // SIGKILL
    let _ = service.0.wait();
    let acked_at_kill = acked.lock().unwrap().len();
    load.abort_all();
    while load.join_next().await.is_some() {}

    // Restart; the relay re-delivers what was pending and the service answers from its store.
    let _service2 = spawn_service(dir.path(), &log);
    let client2 = HasClient::connect(&relay.url).await.unwrap();
    let again = loop {
        match client2
            .authenticate(
                "alice",
                app(),
                None,
                AuthMode::ExistingKey(auth_key.clone()),
            )
            .await
        {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(again.account.as_str(), "alice", "the session survived");
    // The nonce survived: the last acknowledged nonce is refused, a new one works.
    let max_acked = acked.lock().unwrap().iter().map(|(_, n)| *n).max().unwrap();
    let replay = client2
        .sign_with_nonce(
            &session,
            vec![vote("alice", "replay")],
            KeyType::Posting,
            true,
            UnixMillis(max_acked),
        )
        .await;
    assert!(
        replay.is_err(),
        "a nonce acknowledged before the kill is refused after it"
    );
    client2
        .sign(
            &session,
            vec![vote("alice", "after-restart")],
            KeyType::Posting,
            true,
        )
        .await
        .unwrap();
    // No transaction broadcast twice: each permlink at most once on the node.
    let mut seen = HashSet::new();
    for r in node.recorded() {
        let permlink = r.transaction["operations"][0][1]["permlink"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            seen.insert(permlink.clone()),
            "{permlink} was broadcast twice"
        );
    }
    for (p, _) in acked.lock().unwrap().iter() {
        assert!(seen.contains(p), "acknowledged {p} is on the node");
    }
    eprintln!(
        "SIGKILL after {acked_at_kill} acknowledged broadcasts; node recorded {} transactions, none twice",
        seen.len()
    );
    // The durable state agrees.
    let store = Store::open(
        &dir.path().join("state.sqlite"),
        Sealer::new(ks.state_key().clone()),
        state::Sync::Full,
    )
    .unwrap();
    let rows = store
        .call(|c| sessions::list(c, Some("alice")))
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.last_nonce as u64 >= max_acked));

    // Log scan: no private key, auth_key or secret anywhere.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("decision"),
        "the service logged its decisions"
    );
    let mut needles: Vec<String> = alice
        .keys
        .iter()
        .map(|k| k.to_wif().expose_secret().to_owned())
        .collect();
    needles.extend(alice.keys.iter().map(|k| hex::encode(*k.to_bytes())));
    needles.push(auth_key.expose_secret().to_owned());
    needles.push(secret.to_owned());
    needles.push("kill-test-passphrase".to_owned());
    for n in &needles {
        assert!(!text.contains(n.as_str()), "a secret reached the log");
    }
    eprintln!(
        "log scan: {} bytes of debug logs, {} secrets checked, none found",
        text.len(),
        needles.len()
    );
}
