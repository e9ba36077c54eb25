//! The zero-config sandbox (the README's first command): the demo through the real binary,
//! and a kept state directory across restarts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use has_client::{AuthMode, SignResult};
use has_protocol::KeyType;
use pksa_service::cli::sandbox::{self, Options};

use crate::env::{Env, client_for, vote};

/// Kills the child on drop (a failing test leaves no process behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pksa-service sandbox ARGS`, its output where the caller says.
fn sandbox_bin(args: &[&str], stdout: Stdio, stderr: Stdio) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_pksa-service"))
            .arg("sandbox")
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn demo_drives_every_flow_through_the_binary_and_exits_0() {
    // Output to files, not pipes: a chatty run cannot block on a full pipe.
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = sandbox_bin(
        &["--demo"],
        std::fs::File::create(&out_path).unwrap().into(),
        std::fs::File::create(&err_path).unwrap().into(),
    );
    // A bound against a hang, not a speed check.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the demo did not finish in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "demo failed: {out}\n{err}");
    // Every step the README promises is printed.
    for what in [
        "challenge",
        "broadcast",
        "sign only",
        "denied",
        "replayed nonce",
    ] {
        assert!(
            out.to_lowercase().contains(what),
            "the demo printed no {what:?} step:\n{out}"
        );
    }
}

#[test]
fn json_line_describes_a_usable_sandbox() {
    let logs = tempfile::NamedTempFile::new().unwrap();
    let mut child = sandbox_bin(&["--json"], Stdio::piped(), logs.reopen().unwrap().into());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for k in ["relay_url", "hive_api_url", "account", "auth_req_secret"] {
        assert!(
            info[k].as_str().is_some_and(|v| !v.is_empty()),
            "{k} in {line}"
        );
    }
    for role in ["owner", "active", "posting", "memo"] {
        assert!(
            info["public_keys"][role]
                .as_str()
                .is_some_and(|k| k.starts_with("STM")),
            "{role} key in {line}"
        );
    }
    // The printed details are enough to authenticate and sign.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = client_for(
            info["relay_url"].as_str().unwrap(),
            info["hive_api_url"].as_str().unwrap(),
        )
        .await;
        let account = info["account"].as_str().unwrap();
        let s = client
            .authenticate(
                account,
                Env::app("script"),
                None,
                AuthMode::ServiceSecret(has_protocol::AuthReqSecret::new(
                    info["auth_req_secret"].as_str().unwrap().to_owned(),
                )),
            )
            .await
            .unwrap();
        let r = client
            .sign(&s, vec![vote(account, "json-line")], KeyType::Posting, true)
            .await
            .unwrap();
        assert!(matches!(r, SignResult::Broadcast { .. }), "{r:?}");
    });
    // With --json the service still logs, to stderr (it logs its registration for the account
    // before the JSON line is printed).
    let logs = std::fs::read_to_string(logs.path()).unwrap();
    let account = info["account"].as_str().unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("registered") && l.contains(account)),
        "{logs}"
    );
    // SIGTERM stops it cleanly, its temporary state directory removed, as on Ctrl-C.
    let dir = std::path::PathBuf::from(info["dir"].as_str().unwrap());
    assert!(dir.is_dir(), "{line}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "{} outlived the sandbox", dir.display());
}

#[tokio::test]
async fn a_kept_directory_keeps_its_sessions_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        port: 0,
        hive_port: 0,
        dir: Some(dir.path().to_path_buf()),
        metrics: None,
        account: Some("kept-sandbox".into()),
        password: Some("kept-sandbox-password".into()),
        relay: None,
        secret: Some("kept-sandbox-auth-req-secret".into()),
    };
    let sb = sandbox::start(opts()).await.unwrap();
    assert_eq!(sb.secret.expose_secret(), "kept-sandbox-auth-req-secret");
    let client = client_for(&sb.relay_url, &sb.hive_api_url).await;
    let session = client
        .authenticate(
            &sb.account,
            Env::app("kept"),
            None,
            AuthMode::ServiceSecret(sb.secret.clone()),
        )
        .await
        .unwrap();
    client
        .sign(
            &session,
            vec![vote(&sb.account, "before")],
            KeyType::Posting,
            false,
        )
        .await
        .unwrap();
    drop(client);
    sb.stop().await.unwrap();

    // Restarted on the same directory: the app's session still signs, and re-authenticates
    // with its key.
    let sb = sandbox::start(opts()).await.unwrap();
    let client = client_for(&sb.relay_url, &sb.hive_api_url).await;
    let r = client
        .sign(
            &session,
            vec![vote(&sb.account, "after")],
            KeyType::Posting,
            false,
        )
        .await
        .unwrap();
    assert!(matches!(r, SignResult::Signed { .. }), "{r:?}");
    client
        .authenticate(
            &sb.account,
            Env::app("kept"),
            None,
            AuthMode::ExistingKey(session.auth_key.clone()),
        )
        .await
        .unwrap();
    // The fixed secret still enrolls a new app after the restart.
    client
        .authenticate(
            &sb.account,
            Env::app("after-restart"),
            None,
            AuthMode::ServiceSecret(has_protocol::AuthReqSecret::new(
                "kept-sandbox-auth-req-secret",
            )),
        )
        .await
        .unwrap();
    drop(client);
    sb.stop().await.unwrap();

    // A state key that is not the one the store was written with is refused with a clear
    // error, not a service that silently answers nothing.
    std::fs::write(dir.path().join("sandbox.statekey"), "00".repeat(32)).unwrap();
    let e = sandbox::start(opts()).await.unwrap_err().to_string();
    assert!(e.contains("another keystore"), "{e}");
}

#[tokio::test]
async fn a_short_secret_is_refused() {
    let e = sandbox::start(Options {
        secret: Some("short".into()),
        ..Options::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 16"), "{e}");
}

/// The sandbox decides as the built-in default does, except that it accepts sign requests
/// without a nonce (for app libraries that send none).
#[test]
fn the_sandbox_policy_is_the_default_plus_nonceless_signing() {
    use pksa_service::policy::{PolicyConfig, explain};
    let (default, sandbox) = (PolicyConfig::default(), sandbox::sandbox_policy());
    let chain = hive_chain::ChainId::MAINNET;
    let requests = [
        serde_json::json!([["vote", {"voter": "sbx", "author": "abc", "permlink": "p", "weight": 10000}]]),
        serde_json::json!([["transfer", {"from": "sbx", "to": "abc", "amount": "1.000 HIVE", "memo": ""}]]),
        serde_json::json!([["comment_options", {"author": "sbx", "permlink": "p",
            "max_accepted_payout": "1000.000 HBD", "percent_hbd": 10000, "allow_votes": true,
            "allow_curation_rewards": true,
            "extensions": [[0, {"beneficiaries": [{"account": "other", "weight": 1000}]}]]}]]),
        serde_json::json!([["custom_json", {"required_auths": [], "required_posting_auths": ["sbx"],
            "id": "x", "json": "{}"}]]),
        serde_json::json!({"key_type": "posting", "challenge": "c"}),
        serde_json::json!({"key_type": "memo", "challenge": "c"}),
        serde_json::json!({"key_type": "active", "challenge": "c"}),
    ];
    for r in &requests {
        let d = explain(&default, r, "sbx", "app", false, &chain).unwrap();
        let s = explain(&sandbox, r, "sbx", "app", false, &chain).unwrap();
        assert_eq!(d.approve, s.approve, "{r}: {d:?} / {s:?}");
    }
    assert!(!default.sign_without_nonce("sbx", "any-app"));
    assert!(sandbox.sign_without_nonce("sbx", "any-app"));
}
