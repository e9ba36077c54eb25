//! `cargo xtask interop apps`: three independent app libraries from npm (hive-auth-wrapper,
//! Aioha's HiveAuth provider, hive-auth-client; `xtask/js/interop_apps.js`) drive a PKSA
//! through `has-relay`, twice:
//! - against the sandbox (`pksa-service sandbox --relay`), as a developer tries an app;
//! - against `pksa-service run`, set up as an operator does: `init`, the config edited,
//!   `keys add` with the WIF on stdin, a policy rule for the app that sends no nonce,
//!   enrollment windows, and `dev-node` as its Hive API.
//!
//! Every check the script made must pass, and every frame the libraries sent or received
//! (with the inner payloads) must match the schemas and parse with the typed model.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey};
use has_protocol::validate::{self, dir};
use serde_json::Value;

use crate::e2e::{Proc, free_port};
use crate::js;
use crate::relay::{check_frame, rand_hex, scratch, start_relay};

/// The app name hive-auth-client uses in the script (it sends sign_req without a nonce; the
/// run-mode policy has a rule for it).
const NONCELESS_APP: &str = "hive-auth-client-interop";

/// Reads the first stdout line of `child` as JSON (sandbox --json, dev-node --json).
fn json_line(child: &mut std::process::Child, what: &str) -> Result<Value> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    serde_json::from_str(line.trim()).with_context(|| format!("{what}: JSON line {line:?}"))
}

fn field(v: &Value, pointer: &str) -> Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {v}"))
}

/// GET `path` on a loopback port; the status code.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// `pksa-service ARGS` (with the passphrase in the environment and `stdin` fed); its stdout.
fn service_cli(bin: &Path, config: &Path, args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new(bin.join("pksa-service"))
        .args(["--config", &config.to_string_lossy()])
        .args(args)
        .env("PKSA_PASSPHRASE", "interop-apps-passphrase")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("pksa-service {}", args.join(" ")))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "pksa-service {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The target's result: what the script printed, checked.
struct Outcome {
    line: String,
    failed: Vec<String>,
}

/// Runs the script against one PKSA and checks its report.
fn drive(
    label: &str,
    relay_url: &str,
    hive_api_url: &str,
    account: &str,
    secret: &str,
    posting: &str,
) -> Result<Outcome> {
    let node_modules = js::ensure_installed()?.join("node_modules");
    eprintln!("xtask$ node xtask/js/interop_apps.js {label} {relay_url} …");
    let script = js::root().join("xtask").join("js").join("interop_apps.js");
    let out = Command::new("node")
        .arg(&script)
        .args([label, relay_url, hive_api_url, account, secret, posting])
        .env("NODE_PATH", &node_modules)
        .stderr(Stdio::inherit())
        .output()
        .context("running node interop_apps.js")?;
    if !out.status.success() {
        bail!("interop_apps.js ({label}) failed ({})", out.status);
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("interop_apps.js output")?;
    let mut failed = vec![];
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let mut per_lib = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for c in &checks {
        let lib = c["lib"].as_str().unwrap_or("?").to_owned();
        let e = per_lib.entry(lib.clone()).or_default();
        e.0 += 1;
        if c["ok"] != Value::Bool(true) {
            e.1 += 1;
            failed.push(format!("{label}: {lib}: {}: {}", c["name"], c["detail"]));
        }
    }
    let frames = report["frames"].as_array().cloned().unwrap_or_default();
    for f in &frames {
        let text = f["text"].as_str().unwrap_or_default();
        let direction = if f["dir"] == "out" {
            dir::APP_TO_RELAY
        } else {
            dir::RELAY_TO_APP
        };
        if f["binary"] == Value::Bool(true) {
            failed.push(format!("{label}: {}: binary frame {text}", f["lib"]));
        }
        if let Err(e) = check_frame(direction, text) {
            failed.push(format!("{label}: {}: {e}", f["lib"]));
        }
    }
    let payloads = report["payloads"].as_array().cloned().unwrap_or_default();
    for p in &payloads {
        let name = p["name"].as_str().unwrap_or_default();
        let text = p["text"].as_str().unwrap_or_default();
        let expect_invalid = p["invalid"] == Value::Bool(true);
        match serde_json::from_str::<Value>(text) {
            Ok(v) => match (validate::validate(dir::PAYLOADS, name, &v), expect_invalid) {
                (Ok(()), false) | (Err(_), true) => {}
                (Err(e), false) => {
                    failed.push(format!("{label}: {}: payload {e} in {text}", p["lib"]))
                }
                (Ok(()), true) => failed.push(format!(
                    "{label}: {}: a payload the service must refuse passed the schema: {text}",
                    p["lib"]
                )),
            },
            Err(_) => failed.push(format!("{label}: payload {name} is not JSON: {text}")),
        }
    }
    let versions = report["versions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let (n, f) = per_lib.get(k).copied().unwrap_or_default();
                    format!("{k} {} {n} checks {f} failed", v.as_str().unwrap_or("?"))
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let mut payloads_per_lib = std::collections::BTreeMap::<&str, usize>::new();
    for p in &payloads {
        *payloads_per_lib
            .entry(p["lib"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    for lib in per_lib.keys() {
        if payloads_per_lib.get(lib.as_str()).copied().unwrap_or(0) < 3 {
            failed.push(format!(
                "{label}: {lib}: fewer than 3 inner payloads checked ({payloads_per_lib:?})"
            ));
        }
    }
    if per_lib.len() < 3 || frames.is_empty() || payloads.is_empty() {
        failed.push(format!(
            "{label}: the script recorded too little ({} libraries, {} frames, {} payloads)",
            per_lib.len(),
            frames.len(),
            payloads.len()
        ));
    }
    Ok(Outcome {
        line: format!(
            "{label}: {versions}; {} frames and {} inner payloads schema-checked",
            frames.len(),
            payloads.len()
        ),
        failed,
    })
}

/// `cargo xtask interop apps`.
pub fn interop() -> Result<()> {
    crate::sh(
        "cargo",
        &["build", "-p", "has-relay", "-p", "pksa-service"],
        &[],
    )?;
    let bin = js::root().join("target").join("debug");
    let dir = scratch("interop-apps")?;
    let password = format!("pw-{}", rand_hex());
    let (sandbox_account, run_account) = ("interop-sandbox", "interop-run");
    let (_relay, relay_url) = start_relay(
        &bin,
        &dir,
        &[(sandbox_account, &password), (run_account, &password)],
        "",
    )?;
    let mut outcomes = vec![];

    // 1. The sandbox, registered on that relay.
    {
        let mut child = Command::new(bin.join("pksa-service"))
            .args(["sandbox", "--json", "--relay", &relay_url])
            .args(["--account", sandbox_account, "--password", &password])
            .args(["--dir", &dir.join("sandbox").to_string_lossy()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pksa-service sandbox")?;
        let info = json_line(&mut child, "sandbox")?;
        let _sandbox = Proc(child);
        outcomes.push(drive(
            "sandbox",
            &relay_url,
            &field(&info, "/hive_api_url")?,
            sandbox_account,
            &field(&info, "/auth_req_secret")?,
            &field(&info, "/public_keys/posting")?,
        )?);
    }

    // 2. `run`, set up as an operator does.
    {
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir)?;
        let mut node = Command::new(bin.join("pksa-service"))
            .args(["dev-node", "--json", "--accounts"])
            .arg(dir.join("accounts.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pksa-service dev-node")?;
        let node_info = json_line(&mut node, "dev-node")?;
        let _node = Proc(node);
        let hive_api_url = field(&node_info, "/hive_api_url")?;

        let config = run_dir.join("pksa.toml");
        service_cli(&bin, &config, &["init"], "")?;
        let secret = format!("interop-{}", rand_hex());
        let metrics = free_port()?;
        let mut text = std::fs::read_to_string(&config)?;
        for (from, to) in [
            (
                "has_servers = [\"wss://hive-auth.arcange.eu\"]",
                format!("has_servers = [\"{relay_url}\"]"),
            ),
            (
                "hive_api = [\"https://api.hive.blog\", \"https://api.deathwing.me\"]",
                format!("hive_api = [\"{hive_api_url}\"]"),
            ),
            (
                "# auth_req_secret = \"...\"",
                format!("auth_req_secret = \"{secret}\""),
            ),
            (
                "# metrics_listen = \"127.0.0.1:9108\"",
                format!("metrics_listen = \"127.0.0.1:{metrics}\""),
            ),
        ] {
            if !text.contains(from) {
                bail!("the init template has no line {from:?}");
            }
            text = text.replacen(from, &to, 1);
        }
        text.push_str(&format!(
            "\n# hive-auth-client sends sign_req without a nonce.\n[[policy.rules]]\nid = \"nonceless-app\"\napps = [\"{NONCELESS_APP}\"]\nsign_without_nonce = true\ntransfer_to = []\n"
        ));
        std::fs::write(&config, text)?;
        for role in [KeyRole::Posting, KeyRole::Memo] {
            let wif = PrivateKey::from_login(run_account, &password, role)?.to_wif();
            service_cli(
                &bin,
                &config,
                &[
                    "keys",
                    "add",
                    "--account",
                    run_account,
                    "--role",
                    role.as_str(),
                ],
                &format!("{}\n", wif.expose_secret()),
            )?;
        }
        // Apps that no rule names, and the one the rule names (its own window).
        service_cli(
            &bin,
            &config,
            &["enroll", "--account", run_account, "--unlimited"],
            "",
        )?;
        service_cli(
            &bin,
            &config,
            &["enroll", "--account", run_account, "--app", NONCELESS_APP],
            "",
        )?;
        let service = Proc(
            Command::new(bin.join("pksa-service"))
                .args(["--config", &config.to_string_lossy(), "run"])
                .env("PKSA_PASSPHRASE", "interop-apps-passphrase")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting pksa-service run")?,
        );
        let t0 = Instant::now();
        while http_status(metrics, "/readyz") != Some(200) {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("pksa-service run did not become ready (/readyz)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let posting = PrivateKey::from_login(run_account, &password, KeyRole::Posting)?
            .public_key()
            .to_string();
        outcomes.push(drive(
            "run",
            &relay_url,
            &hive_api_url,
            run_account,
            &secret,
            &posting,
        )?);
        drop(service);
    }

    let mut failed = vec![];
    for o in outcomes {
        println!("interop apps: {}", o.line);
        failed.extend(o.failed);
    }
    if !failed.is_empty() {
        bail!("interop apps failures:\n{}", failed.join("\n"));
    }
    println!("interop apps: 0 failures");
    Ok(())
}
