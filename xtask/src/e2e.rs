//! `cargo xtask bench e2e`: has-client load through has-relay into pksa-service (release
//! builds, separate processes, loopback), for challenge and sign-only at concurrency 1, 8
//! and 64; throughput, p50/p99 latency, service CPU time per request and RSS; then p99 at a
//! fixed 1,000 req/s and RSS with 10,000 sessions in the store.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey};
use serde_json::{Value, json};

use crate::js;

pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th there.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0;
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / tick
}

/// A `/proc/<pid>/status` field in MiB (`VmRSS`, `RssAnon`, `RssFile`).
fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn proc_rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn client(bin: &Path, relay: &str, session: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(bin.join("has-client"))
        .args(["--server", relay, "--session", &session.to_string_lossy()])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "has-client {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("has-client output {text:?}"))
}

pub fn run() -> Result<()> {
    crate::sh(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "pksa-service",
            "-p",
            "has-client",
            "-p",
            "has-relay",
        ],
        &[],
    )?;
    let root = js::root();
    let bin = root.join("target").join("release");
    let dir = root.join("target").join("bench-e2e");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    // The account, known to the relay through a static accounts file.
    let (account, password) = ("bench-account", "bench-password-0123456789");
    let keys: Vec<PrivateKey> = KeyRole::ALL
        .iter()
        .map(|r| PrivateKey::from_login(account, password, *r))
        .collect::<Result<_, _>>()?;
    let acct = hive_chain::accounts::Account::with_keys(
        account,
        *keys[3].public_key(),
        *keys[2].public_key(),
        *keys[1].public_key(),
        *keys[0].public_key(),
    );
    std::fs::write(dir.join("accounts.json"), serde_json::to_string(&[acct])?)?;
    std::fs::write(
        dir.join("relay.toml"),
        "frames_per_second = 1000000\nmax_pending_per_account = 1000000\nmax_pending_per_socket = 1000000\nmax_pending_per_ip = 1000000\n",
    )?;
    let port = free_port()?;
    let relay_url = format!("ws://127.0.0.1:{port}");
    let _relay = Proc(
        Command::new(bin.join("has-relay"))
            .args([
                "--config",
                &dir.join("relay.toml").to_string_lossy(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args([
                "--accounts",
                &dir.join("accounts.json").to_string_lossy(),
                "--key-file",
                &dir.join("relay.key").to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("has-relay did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut service = Command::new(bin.join("pksa-service"))
        .args([
            "sandbox",
            "--json",
            "--relay",
            &relay_url,
            "--account",
            account,
            "--password",
            password,
        ])
        .args(["--dir", &dir.join("service").to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = service.stdout.take().context("service stdout")?;
    let pid = service.id();
    let _service = Proc(service);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let info: Value = serde_json::from_str(line.trim()).context("sandbox JSON line")?;
    let secret = info["auth_req_secret"]
        .as_str()
        .context("secret")?
        .to_owned();
    let session = dir.join("session.json");
    client(
        &bin,
        &relay_url,
        &session,
        &[
            "--json",
            "auth",
            "--account",
            account,
            &format!("--secret={secret}"),
        ],
    )?;

    let mut rows = vec![];
    println!(
        "{:<10} {:>5} {:>9} {:>10} {:>9} {:>9} {:>12} {:>8}",
        "kind", "conc", "requests", "req/s", "p50 ms", "p99 ms", "cpu µs/req", "RSS MiB"
    );
    let measure = |kind: &str, c: usize, n: usize, rate: Option<f64>| -> Result<Value> {
        let cpu0 = proc_cpu_secs(pid);
        let mut args = vec![
            "bench".to_owned(),
            "--kind".into(),
            kind.into(),
            "--concurrency".into(),
            c.to_string(),
            "--requests".into(),
            n.to_string(),
        ];
        if let Some(r) = rate {
            args.extend(["--rate".into(), r.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = client(&bin, &relay_url, &session, &refs)?;
        let cpu = proc_cpu_secs(pid) - cpu0;
        let ok = r["ok"].as_f64().unwrap_or(0.0).max(1.0);
        let row = json!({
            "kind": kind, "concurrency": c, "requests": n, "rate": rate, "ok": r["ok"], "errors": r["errors"],
            "throughput_rps": r["throughput_rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "service_cpu_us_per_request": cpu * 1e6 / ok, "service_rss_mib": proc_rss_mib(pid),
        });
        println!(
            "{:<10} {:>5} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>12.0} {:>8.1}",
            kind,
            c,
            n,
            row["throughput_rps"].as_f64().unwrap_or(0.0),
            row["p50_ms"].as_f64().unwrap_or(0.0),
            row["p99_ms"].as_f64().unwrap_or(0.0),
            row["service_cpu_us_per_request"].as_f64().unwrap_or(0.0),
            row["service_rss_mib"].as_f64().unwrap_or(0.0)
        );
        Ok(row)
    };
    for kind in ["challenge", "sign-only"] {
        for c in [1usize, 8, 64] {
            let n = if c == 1 { 2000 } else { 10000 };
            rows.push(measure(kind, c, n, None)?);
        }
    }
    let paced = measure("sign-only", 64, 10000, Some(1000.0))?;
    rows.push(paced.clone());

    // 10,000 sessions in the store (created through the service itself), then load again.
    let t = Instant::now();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let c = std::sync::Arc::new(has_client::HasClient::connect(&relay_url).await?);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (c, next, secret) = (c.clone(), next.clone(), secret.clone());
            set.spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 10_000 {
                    let app = has_protocol::payloads::AppInfo {
                        name: "bench-app".into(),
                        description: None,
                        icon: None,
                        pubkey: None,
                    };
                    c.authenticate(
                        account,
                        app,
                        None,
                        has_client::AuthMode::ServiceSecret(has_protocol::AuthReqSecret::new(
                            secret.clone(),
                        )),
                    )
                    .await?;
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let sessions_rss = proc_rss_mib(pid);
    // Kept for a look at where the resident memory is (mapping by mapping).
    let _ = std::fs::copy(format!("/proc/{pid}/smaps"), dir.join("service-smaps.txt"));
    println!(
        "created 10,000 sessions in {:.1} s; service RSS {sessions_rss:.1} MiB (heap and stacks {:.1} MiB, mapped code and data {:.1} MiB)",
        t.elapsed().as_secs_f64(),
        proc_status_mib(pid, "RssAnon"),
        proc_status_mib(pid, "RssFile"),
    );
    let with_sessions = measure("sign-only", 64, 10000, None)?;
    rows.push(with_sessions.clone());

    let best_sign = rows
        .iter()
        .filter(|r| r["kind"] == "sign-only" && r["rate"].is_null())
        .filter_map(|r| r["throughput_rps"].as_f64())
        .fold(0.0, f64::max);
    let targets = json!({
        "sign_only_rps_ge_5000": best_sign >= 5000.0,
        "p99_le_5ms_at_1000rps": paced["p99_ms"].as_f64().unwrap_or(f64::MAX) <= 5.0,
        "rss_le_20mb_with_10000_sessions": sessions_rss * 1.048_576 <= 20.0, // MiB to MB
    });
    println!("targets: {targets}");
    println!(
        "{}",
        json!({"bench": "e2e", "rows": rows, "rss_mib_with_10000_sessions": sessions_rss, "targets": targets})
    );
    Ok(())
}
