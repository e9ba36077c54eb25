//! The operator commands, through the real binary.

use std::io::Write;
use std::process::{Command, Stdio};

use has_crypto::{KeyRole, PrivateKey};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pksa-service"));
    c.env("PKSA_CLI_PASS", "cli-test-passphrase")
        .env("RUST_LOG", "warn");
    c
}

fn run(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_env(dir, &[], args, stdin)
}

/// [`run`] with these environment variables set.
/// Runs `cmd` with `stdin` written to it (then closed) and its output captured.
pub(crate) fn output_with_stdin(cmd: &mut Command, stdin: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run_env(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = bin();
    cmd.envs(env.iter().copied())
        .arg("--config")
        .arg(dir.join("pksa.toml"))
        .args(args);
    let out = output_with_stdin(&mut cmd, stdin.unwrap_or_default());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `pid_file` names `svc` (the service publishes it once it handles SIGHUP); the
/// 60 s bound is against a hang, not a speed check.
pub(crate) fn wait_for_pid_file(pid_file: &std::path::Path, svc: &mut std::process::Child) {
    let want = svc.id().to_string();
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(pid_file).unwrap_or_default() != want {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no pid file"
        );
        assert!(svc.try_wait().unwrap().is_none(), "the service exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `kill -SIGNAL pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn config(dir: &std::path::Path, extra: &str) {
    std::fs::write(
        dir.join("pksa.toml"),
        format!("has_servers = [\"ws://127.0.0.1:9\"]\nhive_api = [\"http://127.0.0.1:9/\"]\nkeystore = \"keystore.age\"\nkeystore_passphrase = \"env:PKSA_CLI_PASS\"\nstate = \"state.sqlite\"\n{extra}"),
    )
    .unwrap();
}

#[test]
fn init_refuses_to_overwrite_and_writes_a_valid_example() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(dir.path(), &["init"], None);
    assert!(ok, "{out}");
    let (ok, _, err) = run(dir.path(), &["init"], None);
    assert!(!ok && err.contains("already exists"));
    pksa_service::config::Config::load(&dir.path().join("pksa.toml")).unwrap();
    // The README's quick start, as written: `export PKSA_PASSPHRASE=…`, then keys from
    // stdin with no terminal.
    let wif = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
        .unwrap()
        .to_wif();
    let quick_start = [("PKSA_PASSPHRASE", "quick-start-passphrase")];
    let (ok, _, err) = run_env(
        dir.path(),
        &quick_start,
        &["keys", "add", "--account", "alice", "--role", "posting"],
        Some(&format!("{}\n", wif.expose_secret())),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run_env(dir.path(), &quick_start, &["keys", "list"], None);
    assert!(ok && out.contains("alice"), "{out}{err}");
    // The config path from the environment.
    let out = bin()
        .env("PKSA_CONFIG", dir.path().join("pksa.toml"))
        .env("PKSA_PASSPHRASE", "quick-start-passphrase")
        .current_dir(std::env::temp_dir())
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("alice"),
        "{out:?}"
    );
}

#[test]
fn keys_sessions_enrollment_audit_and_policy_commands() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let posting = PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap();
    let wif = posting.to_wif();
    let (ok, out, err) = run(
        dir.path(),
        &["keys", "add", "--account", "alice", "--role", "posting"],
        Some(&format!("{}\n", wif.expose_secret())),
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&posting.public_key().to_string())
            && !out.contains(wif.expose_secret())
            && !err.contains(wif.expose_secret())
    );
    let (ok, _, err) = run(
        dir.path(),
        &["keys", "add", "--account", "alice", "--role", "owner"],
        Some(&format!("{}\n", wif.expose_secret())),
    );
    assert!(
        !ok && err.contains("owner"),
        "owner keys are refused: {err}"
    );
    let (ok, _, err) = run(
        dir.path(),
        &["keys", "add", "--account", "alice", "--role", "memo"],
        Some("5Jnotawif\n"),
    );
    assert!(!ok && err.contains("not a valid WIF"));
    let (_, out, _) = run(dir.path(), &["keys", "list"], None);
    assert_eq!(
        out.trim(),
        format!("alice\tposting\t{}", posting.public_key())
    );
    let (_, out, _) = run(dir.path(), &["keys", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"account": "alice", "role": "posting",
            "public_key": posting.public_key().to_string()})
    );
    // The keystore file holds no key in clear.
    let bytes = std::fs::read(dir.path().join("keystore.age")).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(wif.expose_secret()));

    let (ok, out, err) = run(
        dir.path(),
        &[
            "session",
            "create",
            "--account",
            "alice",
            "--app",
            "bot",
            "--days",
            "30",
        ],
        None,
    );
    assert!(ok, "{err}");
    let auth_key = out
        .lines()
        .find_map(|l| l.strip_prefix("auth_key "))
        .unwrap()
        .to_owned();
    assert_eq!(auth_key.len(), 36);
    let (_, list, _) = run(dir.path(), &["session", "list"], None);
    assert!(
        list.contains("alice\tbot\toperator") && !list.contains(&auth_key),
        "keys are never listed: {list}"
    );
    // Times in RFC 3339 (UTC); --json gives one object per session, never its key.
    let expire_line = out.lines().find(|l| l.starts_with("expire")).unwrap();
    assert!(
        expire_line.contains('T') && expire_line.contains("Z ("),
        "{expire_line}"
    );
    let (_, list, _) = run(dir.path(), &["session", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(
        (
            &v["id"],
            &v["account"],
            &v["app"],
            &v["origin"],
            &v["revoked"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!("alice"),
            &serde_json::json!("bot"),
            &serde_json::json!("operator"),
            &serde_json::json!(false)
        ),
        "{list}"
    );
    assert!(
        v["expire"].as_str().unwrap().ends_with('Z') && !list.contains(&auth_key),
        "{list}"
    );
    let (ok, out, _) = run(
        dir.path(),
        &[
            "session",
            "create",
            "--account",
            "alice",
            "--app",
            "tool",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        ok && v["id"] == 2 && v["auth_key"].as_str().unwrap().len() == 36,
        "{out}"
    );
    assert!(run(dir.path(), &["session", "revoke", "2"], None).0);
    assert!(run(dir.path(), &["session", "revoke", "1"], None).0);
    assert!(!run(dir.path(), &["session", "revoke", "99"], None).0);
    let (ok, out, _) = run(
        dir.path(),
        &[
            "enroll",
            "--account",
            "alice",
            "--app",
            "bot",
            "--for",
            "10m",
        ],
        None,
    );
    assert!(
        ok && out.contains("enrollment window 1 open for alice, app bot until 20")
            && out.contains("(600 s)")
            && out.contains("for one session"),
        "{out}"
    );
    assert!(
        !run(
            dir.path(),
            &["enroll", "--account", "nobody", "--for", "10m"],
            None
        )
        .0
    );
    let (ok, out, _) = run(
        dir.path(),
        &["enroll", "--account", "alice", "--uses", "3", "--for", "1h"],
        None,
    );
    assert!(
        ok && out.contains("window 2") && out.contains("for 3 sessions"),
        "{out}"
    );
    let (ok, out, _) = run(
        dir.path(),
        &["enroll", "--account", "alice", "--unlimited"],
        None,
    );
    assert!(ok && out.contains("for any number of sessions"), "{out}");
    let (ok, out, _) = run(dir.path(), &["enroll", "list"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines.len() == 4, "{out}");
    assert!(
        lines[1].starts_with("1\talice\tbot\t") && lines[1].ends_with("\t1"),
        "{out}"
    );
    assert!(
        lines[2].contains("\t*\t") && lines[2].ends_with("\t3"),
        "{out}"
    );
    assert!(lines[3].ends_with("\tunlimited"), "{out}");
    let (ok, out, _) = run(dir.path(), &["enroll", "list", "--json"], None);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ok && rows.len() == 3, "{out}");
    assert_eq!(
        (&rows[0]["app"], &rows[1]["app"], &rows[2]["uses_left"]),
        (
            &serde_json::json!("bot"),
            &serde_json::Value::Null,
            &serde_json::Value::Null
        ),
        "{out}"
    );
    assert!(rows[0]["until"].as_str().unwrap().ends_with('Z'), "{out}");
    let (ok, out, _) = run(
        dir.path(),
        &["enroll", "--account", "alice", "--for", "1h30m", "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(ok && v["id"] == 4 && v["uses_left"] == 1, "{out}");
    assert!(run(dir.path(), &["enroll", "close", "--id", "4"], None).0);
    assert!(run(dir.path(), &["enroll", "close", "--id", "1"], None).0);
    assert!(
        !run(dir.path(), &["enroll", "close", "--id", "1"], None).0,
        "already closed"
    );
    let (ok, out, _) = run(dir.path(), &["enroll", "close", "--account", "alice"], None);
    assert!(ok && out.contains("closed 2 window(s)"), "{out}");
    let (_, out, _) = run(dir.path(), &["enroll", "list"], None);
    assert_eq!(out.lines().count(), 1, "{out}");

    // Policy check and validate.
    std::fs::write(
        dir.path().join("ops.json"),
        r#"[["transfer",{"from":"alice","to":"bob","amount":"1.000 HIVE","memo":""}]]"#,
    )
    .unwrap();
    let (ok, out, _) = run(
        dir.path(),
        &[
            "policy",
            "check",
            &dir.path().join("ops.json").to_string_lossy(),
            "--account",
            "alice",
        ],
        None,
    );
    assert!(
        !ok && out.contains("decision deny")
            && out.contains("rule     default")
            && out.contains("transfer needs active authority"),
        "{out}"
    );
    // A denial exits 3 (an error exits 1); --json prints one object.
    let st = bin()
        .arg("--config")
        .arg(dir.path().join("pksa.toml"))
        .args(["policy", "check", "--json", "--account", "alice"])
        .arg(dir.path().join("ops.json"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["rule"].as_str()),
        (Some("deny"), Some("default"))
    );
    std::fs::write(
        dir.path().join("bad-op.json"),
        r#"[["vote",{"voter":"alice","author":"bob","permlink":"p","weight":20000}]]"#,
    )
    .unwrap();
    let st = bin()
        .arg("--config")
        .arg(dir.path().join("pksa.toml"))
        .args(["policy", "check", "--account", "alice"])
        .arg(dir.path().join("bad-op.json"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&st.stderr).contains("invalid operation: vote: weight"),
        "{st:?}"
    );
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[rules]]\nid = \"bank\"\nallowed_ops = [\"transfer\"]\nkey_roles = [\"active\"]\n",
    )
    .unwrap();
    let (ok, out, _) = run(
        dir.path(),
        &[
            "policy",
            "validate",
            &dir.path().join("policy.toml").to_string_lossy(),
        ],
        None,
    );
    assert!(ok && out.contains("valid, 1 rule(s), hash "), "{out}");
    config(dir.path(), "policy_file = \"policy.toml\"\n");
    let (_, out, _) = run(
        dir.path(),
        &[
            "policy",
            "check",
            &dir.path().join("ops.json").to_string_lossy(),
            "--account",
            "alice",
        ],
        None,
    );
    assert!(
        out.contains("decision approve") && out.contains("rule     bank"),
        "{out}"
    );
    // With a spend limit: what the state file counted for the account, and a denial (exit 3)
    // when the request would pass the limit, as the service would refuse it.
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[rules]]\nid = \"bank\"\nallowed_ops = [\"transfer\"]\nkey_roles = [\"active\"]\nspend_limits = [{ max = \"1.500 HIVE\", window_hours = 24 }]\n",
    )
    .unwrap();
    let check = || {
        bin()
            .arg("--config")
            .arg(dir.path().join("pksa.toml"))
            .args(["policy", "check", "--account", "alice"])
            .arg(dir.path().join("ops.json"))
            .output()
            .unwrap()
    };
    let st = check();
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success()
            && out.contains(
                "spend    bank/HIVE: 0.000 HIVE spent in the last 24 h + 1.000 HIVE requested, limit 1.500 HIVE"
            ),
        "{out}"
    );
    rusqlite::Connection::open(dir.path().join("state.sqlite"))
        .unwrap()
        .execute(
            "INSERT INTO spend(counter, account, amount, time, uuid) VALUES ('bank/HIVE', 'alice', 1000, ?1, 'earlier')",
            [std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64],
        )
        .unwrap();
    let st = check();
    let out = String::from_utf8_lossy(&st.stdout);
    assert_eq!(st.status.code(), Some(3), "{out}");
    assert!(
        out.contains("decision deny")
            && out.contains("reason   spend limit bank/HIVE: 1.000 HIVE spent")
            && out.contains("(exceeded)"),
        "{out}"
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[rules]]\nid = \"x\"\nkey_roles = [\"owner\"]\n",
    )
    .unwrap();
    let (ok, _, err) = run(
        dir.path(),
        &[
            "policy",
            "validate",
            &dir.path().join("bad.toml").to_string_lossy(),
        ],
        None,
    );
    assert!(!ok && err.contains("key_roles"), "{err}");

    // Audit: empty chain verifies; a tampered row is named.
    let (ok, out, _) = run(dir.path(), &["audit", "verify"], None);
    assert!(ok && out.contains("intact: 0 rows"), "{out}");
    // Rows appended as the service does (with the keystore's state key to seal the head).
    let ks = pksa_service::keystore::KeyStore::open(
        &dir.path().join("keystore.age"),
        &has_crypto::SecretString::from("cli-test-passphrase"),
    )
    .unwrap();
    let sealer = pksa_service::state::Sealer::new(ks.state_key().clone());
    let c = rusqlite::Connection::open(dir.path().join("state.sqlite")).unwrap();
    for i in 0..4 {
        pksa_service::state::audit::append(
            &c,
            &sealer,
            &pksa_service::state::audit::Entry {
                uuid: format!("u{i}"),
                account: "alice".into(),
                app: "bot".into(),
                cmd: "sign_req".into(),
                decision: "approve".into(),
                rule: "default".into(),
                reason: "ok".into(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let (ok, out, _) = run(dir.path(), &["audit", "list", "--account", "alice"], None);
    assert!(ok && out.lines().count() == 4, "{out}");
    let (ok, out, _) = run(
        dir.path(),
        &["audit", "list", "--since", "1h", "--json"],
        None,
    );
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ok && rows.len() == 4, "{out}");
    assert_eq!(
        (&rows[3]["uuid"], &rows[3]["decision"], &rows[3]["rule"]),
        (
            &serde_json::json!("u3"),
            &serde_json::json!("approve"),
            &serde_json::json!("default")
        )
    );
    assert!(rows[3]["time"].as_str().unwrap().ends_with('Z'), "{out}");
    let (ok, out, _) = run(dir.path(), &["audit", "verify"], None);
    assert!(ok && out.contains("intact: 4 rows"), "{out}");
    // The newest row deleted: the chain still links, the sealed head says what is missing.
    c.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
    let (ok, _, err) = run(dir.path(), &["audit", "verify"], None);
    assert!(
        !ok && err.contains("broken at row 4") && err.contains("newest rows (4 to 4) were deleted"),
        "{err}"
    );
    c.execute("UPDATE audit SET decision = 'deny' WHERE id = 2", [])
        .unwrap();
    let (ok, _, err) = run(dir.path(), &["audit", "verify"], None);
    assert!(!ok && err.contains("broken at row 2"), "{err}");
}

/// A state file that is empty, not a database, or damaged is refused at start with the file
/// and the fix named; never silently taken as new.
#[test]
fn a_damaged_state_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let wif = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
        .unwrap()
        .to_wif();
    assert!(
        run(
            dir.path(),
            &["keys", "add", "--account", "alice", "--role", "posting"],
            Some(&format!("{}\n", wif.expose_secret())),
        )
        .0
    );
    assert!(
        run(
            dir.path(),
            &["session", "create", "--account", "alice", "--app", "bot"],
            None
        )
        .0
    );
    let state = dir.path().join("state.sqlite");
    // Checkpointed into the file, the WAL gone (as after a clean stop).
    {
        let c = rusqlite::Connection::open(&state).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    for (what, bytes) in [
        ("is empty (0 bytes)", Vec::new()),
        (
            "not a readable SQLite database",
            b"this is not sqlite".repeat(300),
        ),
    ] {
        let saved = std::fs::read(&state).unwrap();
        std::fs::write(&state, &bytes).unwrap();
        let _ = std::fs::remove_file(dir.path().join("state.sqlite-wal"));
        let (ok, _, err) = run(dir.path(), &["session", "list"], None);
        assert!(
            !ok && err.contains(what)
                && err.contains("state.sqlite")
                && err.contains("--new-state"),
            "{what}: {err}"
        );
        std::fs::write(&state, saved).unwrap();
    }
    // A page of the sessions table overwritten: the integrity check fails.
    let mut bytes = std::fs::read(&state).unwrap();
    let page = 4096;
    for b in bytes.iter_mut().skip(page * 2).take(page) {
        *b = 0x5a;
    }
    std::fs::write(&state, &bytes).unwrap();
    let (ok, _, err) = run(dir.path(), &["session", "list"], None);
    assert!(!ok && err.contains("--new-state"), "{err}");
}

#[test]
fn import_reference_files() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let posting = PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap();
    let memo = PrivateKey::from_login("alice", "pw", KeyRole::Memo).unwrap();
    std::fs::write(
        dir.path().join("keys.json"),
        format!(
            r#"[{{"name":"alice","posting":"{}","memo":"{}"}}]"#,
            posting.to_wif().expose_secret(),
            memo.to_wif().expose_secret()
        ),
    )
    .unwrap();
    let live = pksa_service::state::now_ms() + 86_400_000;
    std::fs::write(
        dir.path().join("storage.json"),
        format!(r#"{{"pksa_name":"old","auth_req_secret":"s","accounts":[{{"name":"alice","auths":[{{"key":"k-live-0000-4000-8000-000000000000","expire":{live},"app":"bot","nonce":1690000000123}},{{"key":"k-old","expire":1,"app":"gone"}}]}}]}}"#),
    )
    .unwrap();
    let (ok, out, err) = run(
        dir.path(),
        &[
            "import",
            "--storage",
            &dir.path().join("storage.json").to_string_lossy(),
            "--keys",
            &dir.path().join("keys.json").to_string_lossy(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("imported 2 key(s)")
            && out.contains("1 live session(s)")
            && out.contains("1 expired or duplicate skipped"),
        "{out}"
    );
    let (_, list, _) = run(dir.path(), &["session", "list"], None);
    assert!(
        list.contains("alice\tbot\timport") && list.contains("1690000000123"),
        "the nonce came along: {list}"
    );
    let (_, keys, _) = run(dir.path(), &["keys", "list"], None);
    assert_eq!(keys.lines().count(), 2);
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "session_lifetime_days = -1\n");
    let (ok, _, err) = run(dir.path(), &["run"], None);
    assert!(
        !ok && err.contains("pksa.toml: session_lifetime_days: must be more than 0"),
        "{err}"
    );
    // A syntax or type error: line, column and the table the key landed in.
    config(
        dir.path(),
        "[log]\nformat = \"json\"\npolicy_file = \"policy.toml\"\n",
    );
    let (ok, _, err) = run(dir.path(), &["run"], None);
    assert!(
        !ok && err
            .contains("pksa.toml: line 8, column 1 (in [log]): `policy_file` is inside `[log]`"),
        "{err}"
    );
}

/// An empty keystore passphrase is refused: nothing is written with it.
#[test]
fn an_empty_keystore_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let wif = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
        .unwrap()
        .to_wif();
    let out = bin()
        .env("PKSA_CLI_PASS", "")
        .arg("--config")
        .arg(dir.path().join("pksa.toml"))
        .args(["keys", "add", "--account", "alice", "--role", "posting"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{}\n", wif.expose_secret()).as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is empty"), "{err}");
    assert!(!dir.path().join("keystore.age").exists());
}

include!("../../../build-support/version_test.rs");

/// `--version` names the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    assert_version_names_the_commit(
        env!("CARGO_BIN_EXE_pksa-service"),
        "pksa-service",
        env!("CARGO_PKG_VERSION"),
    );
}

/// `reload` signals only a running service (it holds its pid file's lock): a pid file left
/// behind names a process that may be anything by now, and is never signalled. A second
/// service on the same state is refused; a stopped service removes its pid file.
#[test]
fn reload_signals_only_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let wif = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
        .unwrap()
        .to_wif();
    assert!(
        run(
            dir.path(),
            &["keys", "add", "--account", "alice", "--role", "posting"],
            Some(&format!("{}\n", wif.expose_secret())),
        )
        .0
    );
    let pid_file = dir.path().join("state.pid");
    // Left behind, naming a live process that is not the service.
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(&pid_file, other.id().to_string()).unwrap();
    let (ok, _, err) = run(dir.path(), &["reload"], None);
    assert!(!ok && err.contains("no pksa-service is running"), "{err}");
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other process was signalled"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    // The service (its relay is unreachable: it keeps trying, and keeps running).
    let mut svc = bin()
        .env("RUST_LOG", "info")
        .arg("--config")
        .arg(dir.path().join("pksa.toml"))
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = svc.id().to_string();
    // Its start-up log says what will sign: the account and its public keys.
    let stderr = svc.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let posting = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
        .unwrap()
        .public_key()
        .to_string();
    let line = log
        .iter()
        .find(|l| l.contains("signing for"))
        .expect("a start-up line per account");
    assert!(
        line.contains("alice") && line.contains(&format!("posting={posting}")),
        "{line}"
    );
    // Ready for SIGHUP once its pid is published.
    wait_for_pid_file(&pid_file, &mut svc);
    let (ok, out, err) = run(dir.path(), &["reload"], None);
    assert!(
        ok && out.contains(&format!("sent SIGHUP to {want}")),
        "{out}{err}"
    );
    let (ok, _, err) = run(dir.path(), &["run"], None);
    assert!(!ok && err.contains("another pksa-service"), "{err}");
    assert!(
        svc.try_wait().unwrap().is_none(),
        "SIGHUP stopped the service"
    );
    signal(svc.id(), "-TERM");
    svc.wait().unwrap();
    assert!(!pid_file.exists(), "the pid file outlived the service");
    let (ok, _, err) = run(dir.path(), &["reload"], None);
    assert!(!ok && err.contains("is the service running"), "{err}");
}

/// `dev-node`: a dry-run Hive node alone, serving the accounts it was given, for `hive_api` of
/// a test deployment of `run`.
#[test]
fn dev_node_serves_the_accounts_it_was_given() {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str, role| {
        *PrivateKey::from_login(name, "pw", role)
            .unwrap()
            .public_key()
    };
    let account = |name: &str| {
        hive_chain::accounts::Account::with_keys(
            name,
            key(name, KeyRole::Owner),
            key(name, KeyRole::Active),
            key(name, KeyRole::Posting),
            key(name, KeyRole::Memo),
        )
    };
    let file = dir.path().join("accounts.json");
    std::fs::write(
        &file,
        serde_json::to_string(&[account("carol"), account("dave")]).unwrap(),
    )
    .unwrap();
    let file_s = file.to_string_lossy().into_owned();
    for (args, names, password) in [
        (
            vec!["--account", "alice", "--password", "pw"],
            vec!["alice"],
            None,
        ),
        // The password from the environment (off the command line).
        (vec!["--account", "alice"], vec!["alice"], Some("pw")),
        (
            vec!["--accounts", file_s.as_str()],
            vec!["carol", "dave"],
            None,
        ),
    ] {
        let mut cmd = bin();
        if let Some(p) = password {
            cmd.env("PKSA_DEV_PASSWORD", p);
        }
        let mut child = cmd
            .arg("dev-node")
            .arg("--json")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _node = Kill(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let info: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(info["accounts"], serde_json::json!(names), "{line}");
        let url = info["hive_api_url"].as_str().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let found = rt.block_on(async {
            let rpc = hive_chain::rpc::RpcClient::new(vec![url], Default::default()).unwrap();
            let asked: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            rpc.get_accounts(&asked).await.unwrap()
        });
        assert_eq!(found.len(), names.len());
        for (acc, name) in found.iter().zip(&names) {
            assert_eq!(acc.name, *name);
            assert_eq!(
                serde_json::to_value(acc.memo_key).unwrap(),
                serde_json::json!(key(name, KeyRole::Memo).to_string()),
                "{name}"
            );
        }
    }
    // Nothing to serve: refused before listening.
    let out = bin().arg("dev-node").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--accounts"), "{err}");
}

/// `dist/pksa.service` and `init --system` agree, and the unit's command line runs the service
/// as systemd would start it: the config `init --system` writes (state directory moved to a
/// temporary one), the passphrase from `$CREDENTIALS_DIRECTORY/pksa-passphrase`, JSON logs;
/// `ExecReload=` (SIGHUP) keeps it running, SIGTERM stops it and removes its pid file.
#[test]
fn the_systemd_unit_runs_the_service_init_system_configures() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/pksa.service"))
            .unwrap();
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(setting("StateDirectory"), ["pksa"]);
    let credential = setting("LoadCredentialEncrypted");
    assert_eq!(credential.len(), 1);
    assert!(credential[0].starts_with(&format!("{}:", pksa_service::config::SYSTEM_CREDENTIAL)));
    let exec = setting("ExecStart");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/pksa-service");
    assert_eq!(
        &args[1..],
        [
            "run",
            "--config",
            "/etc/pksa/pksa.toml",
            "--log-format",
            "json"
        ]
    );
    assert_eq!(setting("ExecReload"), ["/bin/kill -HUP $MAINPID"]);

    let dir = tempfile::tempdir().unwrap();
    let (etc, state, creds) = (
        dir.path().join("etc"),
        dir.path().join("var-lib-pksa"),
        dir.path().join("credentials"),
    );
    for d in [&etc, &state, &creds] {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = etc.join("pksa.toml");
    let cli = |args: &[&str], stdin: &str| {
        let out = output_with_stdin(
            bin()
                .env("CREDENTIALS_DIRECTORY", &creds)
                .arg("--config")
                .arg(&config)
                .args(args),
            stdin,
        );
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(
        &["init", "--system", "--state-dir", &state.to_string_lossy()],
        "",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("credential:pksa-passphrase"), "{text}");
    // `--config -` prints it instead (a container writes the host's file this way).
    let printed = bin()
        .args(["--config", "-", "init", "--system", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout), text);
    // The relay and node of this test instead of the public ones (unreachable here: the
    // service keeps trying, as it would during an outage).
    std::fs::write(
        &config,
        text.replace(
            "has_servers = [\"wss://hive-auth.arcange.eu\"]",
            "has_servers = [\"ws://127.0.0.1:9\"]",
        )
        .replace(
            "hive_api = [\"https://api.hive.blog\", \"https://api.deathwing.me\"]",
            "hive_api = [\"http://127.0.0.1:9/\"]",
        ),
    )
    .unwrap();
    std::fs::write(creds.join("pksa-passphrase"), "unit-passphrase\n").unwrap();
    let posting = PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap();
    cli(
        &["keys", "add", "--account", "alice", "--role", "posting"],
        &format!("{}\n", posting.to_wif().expose_secret()),
    );
    assert!(state.join("keystore.age").exists());

    // As systemd starts it (the unit's arguments, this test's config path).
    let mut svc = bin()
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("RUST_LOG", "info")
        .args(["run", "--config"])
        .arg(&config)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = svc.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).expect("JSON log lines");
    assert!(v["fields"]["message"].is_string(), "{first}");
    let pid_file = state.join("pksa-state.pid");
    wait_for_pid_file(&pid_file, &mut svc);
    for sig in ["-HUP", "-TERM"] {
        signal(svc.id(), sig);
        if sig == "-HUP" {
            // Reloaded, not stopped: the log says so.
            let t0 = std::time::Instant::now();
            loop {
                let line = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
                if line.contains("reload") {
                    break;
                }
                assert!(t0.elapsed() < std::time::Duration::from_secs(30));
            }
            assert!(svc.try_wait().unwrap().is_none(), "SIGHUP stopped it");
        }
    }
    let status = svc.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!pid_file.exists());
}

/// `keys derive` (login-derived keys, as the wallets), `keys generate`, and the chain check of
/// `keys add` against a node that knows the account: its owner key is refused, a key outside
/// the role's authority is warned about.
#[test]
fn keys_derive_generate_and_the_chain_check() {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = bin()
        .args([
            "dev-node",
            "--json",
            "--account",
            "alice",
            "--password",
            "pw",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _node = Kill(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = info["hive_api_url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pksa.toml"),
        format!("has_servers = [\"ws://127.0.0.1:9\"]\nhive_api = [\"{url}\"]\nkeystore = \"keystore.age\"\nkeystore_passphrase = \"env:PKSA_CLI_PASS\"\nstate = \"state.sqlite\"\n"),
    )
    .unwrap();
    let login = |role| PrivateKey::from_login("alice", "pw", role).unwrap();

    let (ok, out, err) = run(
        dir.path(),
        &["keys", "derive", "--account", "alice"],
        Some("pw\n"),
    );
    assert!(ok, "{err}");
    for role in [KeyRole::Posting, KeyRole::Memo] {
        assert!(
            out.contains(&format!("added alice {role} {}", login(role).public_key())),
            "{out}"
        );
    }
    assert!(
        out.contains("owner key derived from the same password is not stored"),
        "{out}"
    );
    assert!(!err.contains("warning") && !err.contains("note"), "{err}");
    assert!(!out.contains(login(KeyRole::Owner).public_key().to_string().as_str()));

    // The account's owner key, whatever role it is given: refused, nothing stored.
    let owner_wif = login(KeyRole::Owner).to_wif();
    let (ok, _, err) = run(
        dir.path(),
        &["keys", "add", "--account", "alice", "--role", "active"],
        Some(&format!("{}\n", owner_wif.expose_secret())),
    );
    assert!(!ok && err.contains("is alice's owner key"), "{err}");
    // A key the chain does not know for that role: stored, with a warning.
    let stranger = PrivateKey::from_login("someone", "else", KeyRole::Active).unwrap();
    let (ok, _, err) = run(
        dir.path(),
        &["keys", "add", "--account", "alice", "--role", "active"],
        Some(&format!("{}\n", stranger.to_wif().expose_secret())),
    );
    assert!(
        ok && err.contains("is not in alice's active authority on chain"),
        "{err}"
    );
    // A new random key for another account.
    let (ok, out, err) = run(
        dir.path(),
        &["keys", "generate", "--account", "bob", "--role", "posting"],
        None,
    );
    assert!(
        ok && out.starts_with("generated bob posting STM"),
        "{out}{err}"
    );
    assert!(err.contains("account_update"), "{err}");
    let (_, out, _) = run(dir.path(), &["keys", "list", "--json"], None);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |account: &str, role: &str| {
        rows.iter()
            .find(|r| r["account"] == account && r["role"] == role)
            .map(|r| r["public_key"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        find("alice", "posting"),
        Some(login(KeyRole::Posting).public_key().to_string())
    );
    assert_eq!(
        find("alice", "active"),
        Some(stranger.public_key().to_string())
    );
    assert!(find("bob", "posting").is_some());
    assert_eq!(find("alice", "owner"), None);
}

/// Shell completions and the manual page come from the same command definitions.
#[test]
fn completions_and_man_page() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("complete -F _pksa__service"), "{text}");
    for sub in [
        "sandbox",
        "dev-node",
        "enroll",
        "keys",
        "derive",
        "--log-format",
    ] {
        assert!(text.contains(sub), "no {sub} in the bash completions");
    }
    let out = bin().args(["completions", "zsh"]).output().unwrap();
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("#compdef pksa-service")
    );
    let out = bin().args(["completions", "nushell"]).output().unwrap();
    assert!(!out.status.success(), "an unknown shell is refused");
    let out = bin().arg("man").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with(".ie"), "{text}");
    assert!(
        text.contains(".TH pksa-service 1") && text.contains("dev\\-node"),
        "{text}"
    );
}

/// The policy reference's examples are valid policies (as `policy validate` reads them).
#[test]
fn the_policy_reference_examples_validate() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(!blocks.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let file = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&file, block.replace("[[policy.rules]]", "[[rules]]")).unwrap();
        let out = bin()
            .args(["policy", "validate"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "example {i}: {out:?}\n{block}");
    }
}
