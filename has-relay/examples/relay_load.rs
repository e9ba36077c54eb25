//! The load generator of `cargo xtask bench relay` (built in release next to has-relay):
//! 10,000 idle WebSocket connections (RSS of the relay process per connection), then 100
//! app/PKSA pairs (sign_req app → relay → PKSA, sign_ack with a POK PKSA → relay → app).
//!
//! usage: relay_load WS_URLS RELAY_PIDS [IDLE_CONNECTIONS PAIRS WINDOW ROUND_TRIPS_PER_PAIR
//! [STORE_PID]]
//! WS_URLS and RELAY_PIDS are comma-separated: with several relay nodes (cluster mode), pair
//! i's app connects to node i mod N and its PKSA to node i+1 mod N, so every round trip
//! crosses nodes; the idle phase (skipped when IDLE_CONNECTIONS is 0) uses the first node.
//! STORE_PID: the Redis process, whose CPU is reported per round trip.
//! The accounts are `bench-0` … `bench-{PAIRS-1}` with login keys from the password "bench"
//! (the relay's accounts file must hold them). Prints one JSON line.
#![allow(
    clippy::indexing_slicing,
    reason = "only serde_json::Value is indexed, which yields Null instead of panicking"
)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey};
use serde_json::Value;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(url: &str) -> Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// Reads text frames until one with `cmd`; answers nothing else.
async fn recv_cmd(ws: &mut Ws, cmd: &str) -> Result<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .with_context(|| format!("waiting for {cmd}"))?
            .with_context(|| format!("socket closed waiting for {cmd}"))??;
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["cmd"] == cmd {
                return Ok(v);
            }
            if v["cmd"] == "error" {
                bail!("relay error waiting for {cmd}: {v}");
            }
        }
    }
}

async fn send_json(ws: &mut Ws, v: &Value) -> Result<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn proc_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

struct Params {
    idle: usize,
    pairs: usize,
    window: usize,
    trips: usize,
    /// The relay processes (CPU is summed over them).
    pids: Vec<u32>,
    /// The Redis process, if any.
    store_pid: Option<u32>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls: Vec<String> = args
        .first()
        .context("usage: relay_load WS_URLS RELAY_PIDS [IDLE PAIRS WINDOW TRIPS [STORE_PID]]")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let pids = args
        .get(1)
        .context("RELAY_PIDS")?
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()?;
    if pids.len() != urls.len() {
        bail!("{} URLs but {} PIDs", urls.len(), pids.len());
    }
    let num = |i: usize, default: usize| -> Result<usize> {
        Ok(match args.get(i) {
            Some(v) => v.parse()?,
            None => default,
        })
    };
    let p = Params {
        idle: num(2, 10_000)?,
        pairs: num(3, 100)?,
        window: num(4, 16)?,
        trips: num(5, 2_000)?,
        store_pid: args.get(6).map(|p| p.parse()).transpose()?,
        pids,
    };
    let names: Vec<String> = (0..p.pairs).map(|i| format!("bench-{i}")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (url, pid) = (
            urls.first().context("a URL")?,
            *p.pids.first().context("a PID")?,
        );
        let idle = if p.idle > 0 {
            idle_phase(url, pid, p.idle).await?
        } else {
            (0.0, 0, 0)
        };
        let load = load_phase(&urls, &names, &p).await?;
        println!(
            "{}",
            serde_json::json!({
                "idle_connections": p.idle, "rss_kb_before": idle.1, "rss_kb_with_idle": idle.2,
                "rss_kb_per_idle_connection": idle.0, "load": load,
            })
        );
        Ok(())
    })
}

/// Opens count sockets that read (and so answer pings) but send nothing. Returns
/// (KB per connection, RSS before, RSS with all open).
async fn idle_phase(url: &str, pid: u32, count: usize) -> Result<(f64, u64, u64)> {
    use futures_util::StreamExt;
    // A first connection so the baseline includes the runtime's warmed-up state.
    let mut warm = ws_connect(url).await?;
    recv_cmd(&mut warm, "connected").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proc_rss_kb(pid);
    let started = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..count {
        let url = url.to_owned();
        let sem = sem.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let permit = sem.acquire_owned().await?;
            let mut ws = ws_connect(&url).await?;
            recv_cmd(&mut ws, "connected").await?;
            drop(permit);
            loop {
                tokio::select! {
                    m = ws.next() => if m.is_none() { bail!("relay closed an idle connection") },
                    _ = stop.changed() => break,
                }
            }
            let _ = ws.close(None).await;
            Ok::<(), anyhow::Error>(())
        });
    }
    // All connected once every permit is back and no task failed.
    loop {
        if let Some(Ok(Err(e))) = tasks.try_join_next() {
            return Err(e.context("idle connection"));
        }
        let rss_conns = count_established(pid);
        if rss_conns >= count {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("only {rss_conns} of {count} idle connections came up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "relay_load: {count} idle connections open after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = proc_rss_kb(pid);
    stop_tx.send(true)?;
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    drop(warm);
    let per = (with.saturating_sub(before)) as f64 / count as f64;
    Ok((per, before, with))
}

/// Sockets of `pid` (open socket fds in /proc/PID/fd).
fn count_established(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .map(|l| l.to_string_lossy().starts_with("socket:"))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
        // The listener and the warm-up connection.
        .saturating_sub(2)
}

/// CPU seconds of the relay processes together.
fn relays_cpu_secs(pids: &[u32]) -> f64 {
    pids.iter().map(|p| proc_cpu_secs(*p)).sum()
}

async fn load_phase(urls: &[String], names: &[String], p: &Params) -> Result<Value> {
    use futures_util::{SinkExt, StreamExt};
    use has_crypto::{SharedSecretCache, memo::pok};
    use tokio_tungstenite::tungstenite::Message;
    let (pairs, window, trips) = (names.len(), p.window, p.trips);

    let node = |i: usize| urls.get(i % urls.len().max(1)).cloned().unwrap_or_default();
    // Register one PKSA per account (on the node after its app's).
    let mut pksas = vec![];
    for (i, name) in names.iter().enumerate() {
        let memo = PrivateKey::from_login(name, "bench", KeyRole::Memo)?;
        let mut ws = ws_connect(&node(i + 1)).await?;
        recv_cmd(&mut ws, "connected").await?;
        send_json(&mut ws, &serde_json::json!({"cmd": "key_req"})).await?;
        let key: has_crypto::PublicKey = recv_cmd(&mut ws, "key_ack").await?["key"]
            .as_str()
            .context("key_ack key")?
            .parse()?;
        let channel = SharedSecretCache::default().channel(&memo, &key);
        let proof = pok::encode(&channel, &now_ms().to_string());
        send_json(
            &mut ws,
            &serde_json::json!({"cmd": "register_req", "app": "bench-pksa", "accounts": [{"name": name, "pok": proof}]}),
        )
        .await?;
        recv_cmd(&mut ws, "register_ack").await?;
        pksas.push((ws, channel));
    }
    let mut apps = vec![];
    for i in 0..names.len() {
        let mut ws = ws_connect(&node(i)).await?;
        recv_cmd(&mut ws, "connected").await?;
        apps.push(ws);
    }
    let cpu0 = relays_cpu_secs(&p.pids);
    let store0 = p.store_pid.map(proc_cpu_secs).unwrap_or(0.0);
    let self0 = proc_cpu_secs(std::process::id());
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (mut ws, channel) in pksas {
        set.spawn(async move {
            // Answers every sign_req with a sign_ack carrying a POK of its uuid.
            let mut answered = 0usize;
            while answered < trips {
                let Some(msg) = ws.next().await else {
                    bail!("PKSA socket closed after {answered}")
                };
                let Message::Text(t) = msg? else { continue };
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["cmd"] != "sign_req" {
                    continue;
                }
                let uuid = v["uuid"].as_str().context("uuid")?;
                let reply = serde_json::json!({"cmd": "sign_ack", "uuid": uuid, "broadcast": false,
                    "data": "ab".repeat(20), "pok": pok::encode(&channel, uuid)});
                ws.send(Message::text(reply.to_string())).await?;
                answered += 1;
            }
            Ok(vec![])
        });
    }
    for (i, mut ws) in apps.into_iter().enumerate() {
        let account = names.get(i).cloned().unwrap_or_default();
        set.spawn(async move {
            let req = Message::text(
                serde_json::json!({"cmd": "sign_req", "account": account,
                    "data": "U2FsdGVkX18BAgMEBQYHCDvftjHluU7Q6gqbBOS5TwcQymcx+tfGNz5Zm1GTP+3T"})
                .to_string(),
            );
            let mut sent_at = std::collections::VecDeque::new();
            let mut latencies = Vec::with_capacity(trips);
            for _ in 0..window.min(trips) {
                ws.feed(req.clone()).await?;
                sent_at.push_back(Instant::now());
            }
            ws.flush().await?;
            let mut sent = sent_at.len();
            while latencies.len() < trips {
                let Some(msg) = ws.next().await else {
                    bail!("app socket closed")
                };
                let Message::Text(t) = msg? else { continue };
                // Cheap dispatch: only the terminal reply matters here.
                if !t.as_str().contains("\"sign_ack\"") {
                    if t.as_str().contains("\"error\"") || t.as_str().contains("_nack") {
                        bail!("relay refused: {}", t.as_str());
                    }
                    continue;
                }
                // Replies come back in order per pair (one PKSA answering in order).
                if let Some(t0) = sent_at.pop_front() {
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                if sent < trips {
                    ws.send(req.clone()).await?;
                    sent_at.push_back(Instant::now());
                    sent += 1;
                }
            }
            Ok(latencies)
        });
    }
    let mut latencies = vec![];
    while let Some(r) = set.join_next().await {
        latencies.extend(r??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = relays_cpu_secs(&p.pids) - cpu0;
    let store_cpu = p.store_pid.map(proc_cpu_secs).unwrap_or(0.0) - store0;
    let self_cpu = proc_cpu_secs(std::process::id()) - self0;
    let trips = (pairs * trips) as f64;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(serde_json::json!({
        "pairs": pairs, "window": window, "round_trips": trips, "seconds": secs,
        "relayed_messages_per_s": 2.0 * trips / secs, "frames_per_s": 5.0 * trips / secs,
        "relay_cpu_us_per_round_trip": cpu * 1e6 / trips,
        "relay_cpu_cores": cpu / secs, "load_generator_cpu_cores": self_cpu / secs, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        "nodes": urls.len(), "store_cpu_us_per_round_trip": store_cpu * 1e6 / trips, "store_cpu_cores": store_cpu / secs,
    }))
}
