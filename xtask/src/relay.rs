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
    build_bench()?;
    bench_single()
}

fn build_bench() -> Result<()> {
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
    )
}

fn bench_single() -> Result<()> {
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
        "max_connections = {}\nframes_per_second = 1000000\nmax_pending_per_account = 1000000\nmax_pending_per_socket = 1000000\nmax_pending_per_ip = 1000000\nmax_pending_bytes = 4294967296\n",
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

/// A `redis-server` for the cluster bench: loopback, no persistence (the bench measures the
/// relays' traffic through it, not the disk).
fn start_redis(dir: &Path) -> Result<(Proc, String)> {
    let port = free_port()?;
    let redis = Proc(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?,
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("redis-server did not start listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((redis, format!("redis://127.0.0.1:{port}/")))
}

/// Runs the load phase of relay_load against `nodes` (URL, process) pairs.
fn load(nodes: &[(Proc, String)], store: Option<&Proc>) -> Result<Value> {
    let bin = js::root().join("target").join("release");
    let urls: Vec<&str> = nodes.iter().map(|(_, u)| u.as_str()).collect();
    let pids: Vec<String> = nodes.iter().map(|(p, _)| p.0.id().to_string()).collect();
    let mut cmd = Command::new(bin.join("examples").join("relay_load"));
    cmd.args([urls.join(","), pids.join(",")])
        .args([0, PAIRS, WINDOW, ROUND_TRIPS_PER_PAIR].map(|n| n.to_string()));
    if let Some(s) = store {
        cmd.arg(s.0.id().to_string());
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running relay_load")?;
    if !out.status.success() {
        bail!("relay_load failed ({})", out.status);
    }
    let r: Value = serde_json::from_slice(&out.stdout).context("relay_load output")?;
    r.get("load")
        .cloned()
        .context("relay_load: no load figures")
}

/// Waits until a cluster node's /readyz answers 200 (its Redis connected).
fn wait_ready(metrics: &str) -> Result<()> {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(metrics) {
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("relay node at {metrics} not ready (Redis) in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cargo xtask bench relay --nodes N`: relayed messages/s and round-trip latency of the same
/// load (100 app/PKSA pairs, window 16) through one node alone (the baseline), one node with
/// Redis, and N nodes sharing a Redis where every app's PKSA is on another node (all traffic
/// crosses nodes), all on this machine in one command.
pub fn bench_nodes(n: usize) -> Result<()> {
    if !(1..=16).contains(&n) {
        bail!("--nodes takes 1 to 16");
    }
    build_bench()?;
    let dir = scratch("bench-relay-cluster")?;
    let names: Vec<String> = (0..PAIRS).map(|i| format!("bench-{i}")).collect();
    let accounts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "bench")).collect();
    let bin = js::root().join("target").join("release");
    let caps = "frames_per_second = 1000000\nmax_pending_per_account = 1000000\nmax_pending_per_socket = 1000000\nmax_pending_per_ip = 1000000\nmax_pending_bytes = 4294967296\n";

    let single = {
        let node = start_relay(&bin, &dir, &accounts, caps)?;
        load(&[node], None)?
    };
    let (redis, redis_url) = start_redis(&dir)?;
    let mut runs = vec![];
    for count in [1, n] {
        let mut nodes = vec![];
        for _ in 0..count {
            let metrics = format!("127.0.0.1:{}", free_port()?);
            let config = format!("{caps}redis = \"{redis_url}\"\nmetrics_listen = \"{metrics}\"\n");
            nodes.push(start_relay(&bin, &dir, &accounts, &config)?);
            wait_ready(&metrics)?;
        }
        runs.push((count, load(&nodes, Some(&redis))?));
        drop(nodes);
        if n == 1 {
            break;
        }
    }
    drop(redis);

    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let base = f(&single, "/relayed_messages_per_s").max(1.0);
    println!();
    println!(
        "{:<44} {:>12} {:>8} {:>16} {:>14} {:>12}",
        "has-relay (release, loopback, 2 cores)",
        "relayed/s",
        "ratio",
        "p50 / p99 ms",
        "relays µs/rt",
        "Redis µs/rt"
    );
    let row = |label: String, v: &Value| {
        println!(
            "{:<44} {:>12.0} {:>8.2} {:>16} {:>14.1} {:>12}",
            label,
            f(v, "/relayed_messages_per_s"),
            f(v, "/relayed_messages_per_s") / base,
            format!("{:.2} / {:.2}", f(v, "/p50_ms"), f(v, "/p99_ms")),
            f(v, "/relay_cpu_us_per_round_trip"),
            match v.pointer("/store_cpu_us_per_round_trip") {
                Some(_) if f(v, "/nodes") > 0.0 && f(v, "/store_cpu_cores") > 0.0 =>
                    format!("{:.1}", f(v, "/store_cpu_us_per_round_trip")),
                _ => "-".to_owned(),
            }
        );
    };
    row("1 node, no Redis (baseline)".to_owned(), &single);
    for (count, v) in &runs {
        let label = if *count == 1 {
            "1 node + Redis".to_owned()
        } else {
            format!("{count} nodes + Redis, every round trip cross-node")
        };
        row(label, v);
    }
    println!(
        "{}",
        serde_json::json!({"bench": "relay-nodes", "nodes": n, "single": single,
            "cluster": runs.iter().map(|(c, v)| serde_json::json!({"nodes": c, "load": v})).collect::<Vec<_>>()})
    );
    Ok(())
}
