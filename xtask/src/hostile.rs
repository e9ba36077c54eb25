//! `cargo xtask hostile [--seconds N]`: what a stranger with no credentials can do to a relay
//! and a service, measured. Release binaries on loopback: has-relay with its default limits,
//! the service (sandbox, registered on that relay), and a legitimate app signing challenges
//! at a steady pace while each attack runs for N seconds (default 15; CI runs 5):
//!
//! * ping flood: one socket sends pings as fast as it can and never reads;
//! * pending flood: four sockets send sign requests nobody can decrypt for the account;
//! * amplification: with 1,000 sessions on the account, two sockets send 300 KB requests
//!   nobody can decrypt, 20 a second each.
//!
//! For each: what the app saw (answers, refusals, p99), the relay's and the service's peak
//! RSS and CPU, and a verdict against the bounds (relay RSS ≤ 64 MB under the ping flood,
//! no refused app request under the pending flood, app p99 ≤ 50 ms during amplification).
//! Exits non-zero when a bound is crossed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::e2e::{Proc, free_port};

const ACCOUNT: &str = "hostile-account";
const PASSWORD: &str = "hostile-password-0123456789";

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Relay (default limits) and service (sandbox on it), with a legitimate app's session.
struct Stage {
    relay: Proc,
    service: Proc,
    url: String,
    secret: String,
    _dir: tempfile::TempDir,
}

fn stage(bin: &Path) -> Result<Stage> {
    let dir = tempfile::tempdir()?;
    let (relay, url) = crate::relay::start_relay(bin, dir.path(), &[(ACCOUNT, PASSWORD)], "")?;
    let mut service = Command::new(bin.join("pksa-service"))
        .args(["sandbox", "--json", "--relay", &url])
        .args(["--account", ACCOUNT, "--password", PASSWORD])
        .args(["--dir", &dir.path().join("service").to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the service")?;
    let stdout = service.stdout.take().context("service stdout")?;
    let service = Proc(service);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let info: Value = serde_json::from_str(line.trim()).context("sandbox JSON line")?;
    let secret = info["auth_req_secret"]
        .as_str()
        .context("secret")?
        .to_owned();
    Ok(Stage {
        relay,
        service,
        url,
        secret,
        _dir: dir,
    })
}

/// What the legitimate app saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    refused: u64,
    latencies_ms: Vec<f64>,
}

impl Seen {
    fn p99(&self) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v.get((v.len() as f64 * 0.99) as usize)
            .or(v.last())
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Signs challenges every 50 ms until `stop`, from a session authenticated now.
async fn legitimate_app(url: String, secret: String, stop: Arc<AtomicBool>) -> Result<Seen> {
    let client = has_client::HasClient::connect(&url).await?;
    let app = has_protocol::payloads::AppInfo {
        name: "legit-app".into(),
        description: None,
        icon: None,
        pubkey: None,
    };
    let session = client
        .authenticate(
            ACCOUNT,
            app,
            None,
            has_client::AuthMode::ServiceSecret(has_protocol::AuthReqSecret::new(secret)),
        )
        .await?;
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        let t0 = Instant::now();
        match client
            .challenge(
                &session,
                has_protocol::KeyType::Posting,
                &format!("legit {i}"),
                false,
            )
            .await
        {
            Ok(_) => {
                seen.ok += 1;
                seen.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Err(_) => seen.refused += 1,
        }
    }
    Ok(seen)
}

async fn raw_socket(
    url: &str,
    recv_buffer: Option<u32>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse()?;
    let sock = tokio::net::TcpSocket::new_v4()?;
    // The attacker comes from another address than the app (127.0.0.2: loopback too), as
    // it would in the wild; the relay's caps per address apply to it, not to the app.
    sock.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))?;
    if let Some(b) = recv_buffer {
        sock.set_recv_buffer_size(b)?;
    }
    let s = sock.connect(addr).await?;
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(s)).await?;
    Ok(ws)
}

/// One socket: pings as fast as it can, never reads.
async fn ping_flood(url: String, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> Result<()> {
    let mut ws = raw_socket(&url, Some(4096)).await?;
    let payload = vec![7u8; 125];
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            if ws
                .feed(Message::Ping(payload.clone().into()))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        if tokio::time::timeout(Duration::from_secs(1), ws.flush())
            .await
            .map(|r| r.is_err())
            .unwrap_or(false)
        {
            return Ok(());
        }
        sent.fetch_add(1000, Ordering::Relaxed);
    }
    Ok(())
}

/// One socket: sign requests nobody can decrypt (`size` bytes of ciphertext), one every
/// `pace`; answers are read and dropped.
async fn junk_requests(
    url: String,
    size: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    let ws = raw_socket(&url, None).await?;
    let (mut sink, mut source) = ws.split();
    let reader = tokio::spawn(async move { while source.next().await.is_some() {} });
    let junk = has_crypto::cryptojs::encrypt(&"j".repeat(size), "nobody's key");
    let frame = json!({"cmd": "sign_req", "account": ACCOUNT, "data": junk}).to_string();
    while !stop.load(Ordering::Relaxed) {
        if sink
            .send(Message::Text(frame.clone().into()))
            .await
            .is_err()
        {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(pace).await;
    }
    reader.abort();
    Ok(())
}

/// Creates `n` more sessions on the account (an enrollment window is open in the sandbox).
async fn sessions(url: &str, secret: &str, n: usize) -> Result<()> {
    let c = Arc::new(has_client::HasClient::connect(url).await?);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (c, next, secret) = (c.clone(), next.clone(), secret.to_owned());
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let app = has_protocol::payloads::AppInfo {
                    name: "other-app".into(),
                    description: None,
                    icon: None,
                    pubkey: None,
                };
                c.authenticate(
                    ACCOUNT,
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
    Ok(())
}

struct Row {
    attack: &'static str,
    attacker: String,
    seen: Seen,
    relay_peak_mib: f64,
    service_peak_mib: f64,
    relay_cpu: f64,
    service_cpu: f64,
    verdict: Result<(), String>,
}

#[derive(Clone, Copy)]
enum Attack {
    PingFlood,
    PendingFlood,
    Amplification,
}

fn one(bin: &Path, attack: Attack, secs: u64) -> Result<Row> {
    let st = stage(bin)?;
    let (rpid, spid) = (st.relay.0.id(), st.service.0.id());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        if let Attack::Amplification = attack {
            sessions(&st.url, &st.secret, 1000).await?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (rc0, sc0) = (cpu_secs(rpid), cpu_secs(spid));
        let app = tokio::spawn(legitimate_app(
            st.url.clone(),
            st.secret.clone(),
            stop.clone(),
        ));
        let mut attackers = tokio::task::JoinSet::new();
        match attack {
            Attack::PingFlood => {
                attackers.spawn(ping_flood(st.url.clone(), stop.clone(), sent.clone()));
            }
            Attack::PendingFlood => {
                for _ in 0..4 {
                    // About the relay's frame rate per socket: the point is its pending caps.
                    attackers.spawn(junk_requests(
                        st.url.clone(),
                        512,
                        Duration::from_millis(2),
                        stop.clone(),
                        sent.clone(),
                    ));
                }
            }
            Attack::Amplification => {
                for _ in 0..2 {
                    // 20 a second per socket (12 MB/s in all): the point is what each costs the
                    // service (290 ms each over 1,000 sessions before), not the bandwidth.
                    attackers.spawn(junk_requests(
                        st.url.clone(),
                        300 * 1024,
                        Duration::from_millis(50),
                        stop.clone(),
                        sent.clone(),
                    ));
                }
            }
        }
        let (mut rpeak, mut speak) = (0u64, 0u64);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            rpeak = rpeak.max(status_kib(rpid, "VmRSS"));
            speak = speak.max(status_kib(spid, "VmRSS"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let seen = app.await??;
        attackers.abort_all();
        let relay_peak_mib = rpeak as f64 / 1024.0;
        let verdict = match attack {
            Attack::PingFlood if relay_peak_mib * 1.048_576 > 64.0 => {
                Err(format!("relay RSS {relay_peak_mib:.1} MiB > 64 MB"))
            }
            Attack::PendingFlood if seen.refused > 0 => {
                Err(format!("{} legitimate requests refused", seen.refused))
            }
            Attack::Amplification if seen.p99() > 50.0 => {
                Err(format!("legitimate p99 {:.1} ms > 50 ms", seen.p99()))
            }
            _ if seen.ok == 0 => Err("the legitimate app got no answer".into()),
            _ => Ok(()),
        };
        let attacker = match attack {
            Attack::PingFlood => format!("{} pings, never read", sent.load(Ordering::Relaxed)),
            Attack::PendingFlood => format!(
                "{} undecryptable sign_req from 4 sockets",
                sent.load(Ordering::Relaxed)
            ),
            Attack::Amplification => format!(
                "{} undecryptable 300 KB sign_req, 1,000 sessions",
                sent.load(Ordering::Relaxed)
            ),
        };
        Ok(Row {
            attack: match attack {
                Attack::PingFlood => "ping flood",
                Attack::PendingFlood => "pending flood",
                Attack::Amplification => "amplification",
            },
            attacker,
            relay_peak_mib,
            service_peak_mib: speak as f64 / 1024.0,
            relay_cpu: cpu_secs(rpid) - rc0,
            service_cpu: cpu_secs(spid) - sc0,
            seen,
            verdict,
        })
    })
}

/// Runs every attack for `secs` seconds each and prints the table; Err when a bound is
/// crossed.
/// `HOSTILE_BIN=<dir>` runs the attacks against the binaries in that directory instead (an
/// older build, for an A/B).
pub fn run(secs: u64) -> Result<()> {
    let bin = match std::env::var_os("HOSTILE_BIN") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
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
            crate::js::root().join("target").join("release")
        }
    };
    let _ = free_port()?;
    let mut rows = vec![];
    for attack in [
        Attack::PingFlood,
        Attack::PendingFlood,
        Attack::Amplification,
    ] {
        rows.push(one(&bin, attack, secs)?);
    }
    println!(
        "{:<14} {:<48} {:>6} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9}  verdict",
        "attack",
        "attacker",
        "app ok",
        "refused",
        "p99 ms",
        "relay MiB",
        "svc MiB",
        "relay s",
        "svc s"
    );
    let mut failed = vec![];
    for r in &rows {
        println!(
            "{:<14} {:<48} {:>6} {:>8} {:>9.1} {:>10.1} {:>10.1} {:>9.2} {:>9.2}  {}",
            r.attack,
            r.attacker,
            r.seen.ok,
            r.seen.refused,
            r.seen.p99(),
            r.relay_peak_mib,
            r.service_peak_mib,
            r.relay_cpu,
            r.service_cpu,
            match &r.verdict {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
        if let Err(e) = &r.verdict {
            failed.push(format!("{}: {e}", r.attack));
        }
    }
    if !failed.is_empty() {
        bail!("hostile: {}", failed.join("; "));
    }
    println!("hostile: every bound held ({secs} s per attack)");
    Ok(())
}
