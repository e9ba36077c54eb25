//! `cargo xtask bench relay`: idle connection memory and relayed-message throughput of
//! has-relay; the relay and frame helpers `interop apps` shares.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey};
use has_protocol::validate::{self, dir};
use has_protocol::{AppToRelay, RelayToApp};
use serde_json::Value;

use crate::e2e::{Proc, free_port};
use crate::js;

/// Starts `has-relay` (from `bin`) on a free loopback port with a static accounts file holding
/// the login-derived keys of `account`/`password`; returns the process and its URL.
pub(crate) fn start_relay(
    bin: &Path,
    dir: &Path,
    accounts: &[(&str, &str)],
    extra_config: &str,
) -> Result<(Proc, String)> {
    let mut list = vec![];
    for (account, password) in accounts {
        let keys: Vec<PrivateKey> = KeyRole::ALL
            .iter()
            .map(|r| PrivateKey::from_login(account, password, *r))
            .collect::<Result<_, _>>()?;
        list.push(hive_chain::accounts::Account::with_keys(
            account,
            *keys[3].public_key(),
            *keys[2].public_key(),
            *keys[1].public_key(),
            *keys[0].public_key(),
        ));
    }
    std::fs::write(dir.join("accounts.json"), serde_json::to_string(&list)?)?;
    std::fs::write(dir.join("relay.toml"), extra_config)?;
    let port = free_port()?;
    let relay = Proc(
        Command::new(bin.join("has-relay"))
            .args(["--config", &dir.join("relay.toml").to_string_lossy()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--accounts", &dir.join("accounts.json").to_string_lossy()])
            .args(["--key-file", &dir.join("relay.key").to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting has-relay")?,
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("has-relay did not start listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((relay, format!("ws://127.0.0.1:{port}")))
}

pub(crate) fn scratch(name: &str) -> Result<PathBuf> {
    let dir = js::root().join("target").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Checks one recorded frame: a known command of that direction, valid against its schema,
/// and parsed by the typed model.
pub(crate) fn check_frame(direction: &str, text: &str) -> Result<String> {
    let value: Value = serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))?;
    let cmd = value
        .get("cmd")
        .and_then(Value::as_str)
        .with_context(|| format!("no cmd: {text}"))?
        .to_owned();
    if !validate::is_known(direction, &cmd) {
        bail!("{direction}: unknown command {cmd:?} in {text}");
    }
    validate::validate(direction, &cmd, &value)
        .map_err(|e| anyhow::anyhow!("{direction}: {e} in {text}"))?;
    match direction {
        dir::APP_TO_RELAY => has_protocol::frame::parse::<AppToRelay>(text).map(|_| ()),
        _ => has_protocol::frame::parse::<RelayToApp>(text).map(|_| ()),
    }
    .map_err(|e| anyhow::anyhow!("{direction}: {e} in {text}"))?;
    Ok(cmd)
}

/// 16 random hex characters (passwords and secrets of a run).
pub(crate) fn rand_hex() -> String {
    use rand::Rng;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

const IDLE_CONNECTIONS: usize = 10_000;
const PAIRS: usize = 100;
const WINDOW: usize = 16;
const ROUND_TRIPS_PER_PAIR: usize = 2_000;

/// `cargo xtask bench relay`: has-relay and its load generator (has-relay/examples/relay_load.rs)
/// as separate release processes on loopback. RSS per idle connection with 10,000 open, and
/// relayed messages per second with 100 app/PKSA pairs: each round trip is two relayed
/// messages (the request to the PKSA, the reply with its POK checked to the app) and five
/// frames through the relay (request, wait, relayed request, reply, relayed reply).
pub fn bench() -> Result<()> {
    crate::sh(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "has-relay",
            "--bin",
            "has-relay",
            "--example",
            "relay_load",
        ],
        &[],
    )?;
    // Both children inherit the raised soft limit.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let want = (IDLE_CONNECTIONS as u64 + 2_000).min(hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, want.max(soft), hard)?;
    if want < IDLE_CONNECTIONS as u64 + 500 {
        bail!("the open-file hard limit ({hard}) is too low for {IDLE_CONNECTIONS} connections");
    }
    let bin = js::root().join("target").join("release");
    let dir = scratch("bench-relay")?;
    let names: Vec<String> = (0..PAIRS).map(|i| format!("bench-{i}")).collect();
    let accounts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "bench")).collect();
    let config = format!(
        "max_connections = {}\nframes_per_second = 1000000\nmax_pending_per_account = 1000000\nmax_pending_per_socket = 1000000\nmax_pending_per_ip = 1000000\n",
        IDLE_CONNECTIONS + 1_000
    );
    let (relay, url) = start_relay(&bin, &dir, &accounts, &config)?;
    let pid = relay.0.id().to_string();
    let out = Command::new(bin.join("examples").join("relay_load"))
        .args([url.as_str(), pid.as_str()])
        .args([IDLE_CONNECTIONS, PAIRS, WINDOW, ROUND_TRIPS_PER_PAIR].map(|n| n.to_string()))
        .stderr(Stdio::inherit())
        .output()
        .context("running relay_load")?;
    drop(relay);
    if !out.status.success() {
        bail!("relay_load failed ({})", out.status);
    }
    let r: Value = serde_json::from_slice(&out.stdout).context("relay_load output")?;
    let f = |p: &str| r.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    println!();
    println!(
        "{:<46} {:>16} {:>10}",
        "has-relay (release, loopback, 2 cores)", "measured", "target"
    );
    println!(
        "{:<46} {:>13.1} KB {:>10}",
        format!("RSS per idle connection ({IDLE_CONNECTIONS} open)"),
        f("/rss_kb_per_idle_connection"),
        "≤ 30 KB"
    );
    println!(
        "{:<46} {:>16.0} {:>10}",
        format!("relayed messages/s ({PAIRS} pairs, window {WINDOW})"),
        f("/load/relayed_messages_per_s"),
        "≥ 50,000"
    );
    println!(
        "{:<46} {:>16.0}",
        "frames through the relay/s",
        f("/load/frames_per_s")
    );
    println!(
        "{:<46} {:>13.1} µs",
        "relay CPU per round trip (5 frames)",
        f("/load/relay_cpu_us_per_round_trip")
    );
    println!(
        "{:<46} {:>16}",
        "CPU cores used: relay / load generator",
        format!(
            "{:.2} / {:.2}",
            f("/load/relay_cpu_cores"),
            f("/load/load_generator_cpu_cores")
        )
    );
    println!(
        "{:<46} {:>16}",
        "round trip p50 / p99",
        format!("{:.2} / {:.2} ms", f("/load/p50_ms"), f("/load/p99_ms"))
    );
    println!("{}", serde_json::json!({"bench": "relay", "result": r}));
    Ok(())
}
