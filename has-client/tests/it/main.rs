//! The `has-client` binary against a real PKSA (pksa-service's sandbox: relay, dry-run Hive
//! node and service, on loopback).

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

use pksa_service::cli::sandbox::{self, Options};

fn client(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_has-client"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread")]
async fn options_anywhere_secrets_from_env_or_file_json_errors_and_exit_codes() {
    let sb = sandbox::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session.json");
    let session_s = session.to_string_lossy().into_owned();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{}\n", sb.secret.expose_secret())).unwrap();
    let secret_file_s = secret_file.to_string_lossy().into_owned();
    let relay = sb.relay_url.clone();
    let account = sb.account.clone();

    let outs = tokio::task::spawn_blocking(move || {
        let mut outs = vec![];
        // Global options after the command; the secret from a file.
        outs.push(client(
            &[
                "auth", "--account", &account, "--secret-file", &secret_file_s,
                "--server", &relay, "--session", &session_s, "--json",
            ],
            &[],
        ));
        // Before the command; the secret from the environment (a fresh session file).
        let other = format!("{session_s}.2");
        // A wrong one: the PKSA cannot decrypt the auth_key, so it stays silent; --timeout.
        outs.push(client(
            &[
                "--server", &relay, "--session", &other, "--json", "--timeout", "2", "auth",
                "--account", &account,
            ],
            &[("HAS_AUTH_REQ_SECRET", "not-the-secret-0123456789")],
        ));
        // HAS_AUTH_REQ_SECRET exported does not stand in the way of --key (it is only used
        // when no flag chose): a key the PKSA does not know gets silence, then --timeout.
        outs.push(client(
            &[
                "--server", &relay, "--session", &other, "--json", "--timeout", "2", "auth",
                "--account", &account, "--key", "00000000-0000-4000-8000-000000000000",
            ],
            &[("HAS_AUTH_REQ_SECRET", "not-the-secret-0123456789")],
        ));
        let empty = format!("{secret_file_s}.empty");
        std::fs::write(&empty, "\n").unwrap();
        outs.push(client(
            &["--session", &other, "auth", "--account", &account, "--secret-file", &empty],
            &[("HAS_SERVER", relay.as_str())],
        ));
        // A transfer the default policy refuses: exit 3, a JSON error.
        let transfer = format!(
            r#"[["transfer",{{"from":"{account}","to":"someone","amount":"1.000 HIVE","memo":""}}]]"#
        );
        outs.push(client(
            &["sign", "--ops", &transfer, "--key-type", "active", "--server", &relay,
              "--session", &session_s, "--json"],
            &[],
        ));
        // An operation hived refuses: sign_err, exit 4.
        let bad = format!(
            r#"[["vote",{{"voter":"{account}","author":"abc","permlink":"p","weight":20000}}]]"#
        );
        outs.push(client(
            &["sign", "--ops", &bad, "--server", &relay, "--session", &session_s, "--json"],
            &[],
        ));
        // A challenge that works, waiting line on stderr without --json.
        outs.push(client(
            &["challenge", "--text", "hello", "--session", &session_s],
            &[("HAS_SERVER", relay.as_str())],
        ));
        // Nothing listening: exit 6.
        outs.push(client(
            &["challenge", "--text", "x", "--server", "ws://127.0.0.1:9", "--session",
              &session_s, "--json"],
            &[],
        ));
        outs
    })
    .await
    .unwrap();

    let [
        auth_file,
        auth_env_bad,
        auth_key_with_env,
        auth_env_empty,
        refused,
        failed,
        challenge,
        no_relay,
    ] = <[Output; 8]>::try_from(outs).unwrap();
    assert_eq!(
        auth_key_with_env.status.code(),
        Some(5),
        "{auth_key_with_env:?}"
    );
    assert!(auth_file.status.success(), "{auth_file:?}");
    assert_eq!(json(&auth_file)["account"], sb.account.as_str());
    assert_eq!(auth_env_bad.status.code(), Some(5), "{auth_env_bad:?}");
    let e = json(&auth_env_bad);
    assert_eq!(e["error"]["kind"], "timeout");
    // The relay acknowledged it: its uuid, to `attach` to.
    let uuid = e["error"]["uuid"]
        .as_str()
        .expect("the timed-out request's uuid");
    assert!(
        has_protocol::RequestId::try_from(uuid.to_owned()).is_ok(),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("has-client attach --uuid {uuid}")),
        "{e}"
    );
    assert_eq!(auth_env_empty.status.code(), Some(1), "{auth_env_empty:?}");
    assert!(
        String::from_utf8_lossy(&auth_env_empty.stderr).contains("no secret on its first line"),
        "{auth_env_empty:?}"
    );

    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert_eq!(json(&refused)["error"]["kind"], "refused");
    assert_eq!(failed.status.code(), Some(4), "{failed:?}");
    let e = json(&failed);
    assert_eq!(e["error"]["kind"], "failed");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid operation: vote: weight"),
        "{e}"
    );
    assert!(challenge.status.success(), "{challenge:?}");
    assert!(
        String::from_utf8_lossy(&challenge.stderr).contains("waiting for the PKSA"),
        "{challenge:?}"
    );
    assert_eq!(no_relay.status.code(), Some(6), "{no_relay:?}");
    assert_eq!(json(&no_relay)["error"]["kind"], "relay");
    sb.stop().await.unwrap();
}

include!("../../../build-support/version_test.rs");

/// `--version` names the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    assert_version_names_the_commit(
        env!("CARGO_BIN_EXE_has-client"),
        "has-client",
        env!("CARGO_PKG_VERSION"),
    );
}
