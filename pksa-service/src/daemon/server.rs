//! One task per HAS server: connect → `connected` (protocol ≤ 1) → `key_req`/`key_ack` →
//! one `register_req` per account → serve requests; reconnect with capped exponential
//! backoff and jitter; ping/pong liveness with the timer reset on every new socket; never
//! more than one socket per server; on shutdown, finish in-flight replies, then close.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use has_crypto::PublicKey;
use has_crypto::memo::pok;
use has_protocol::messages::*;
use has_protocol::{PksaToRelay, RelayToPksa, frame};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{ServerStatus, Service};
use crate::request::{self, Request};
use crate::state::now_ms;
use crate::text::Escaped;

/// Liveness: a ping every interval; no pong for three intervals means the link is dead.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Handshake steps (connect, connected, key_ack) each get this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Capped low: a relay back after a long outage is found again within 5 s (jitter only
/// shortens the wait).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An account the relay did not acknowledge is registered again after this long, then twice
/// as long each time, up to [`REGISTER_RETRY_MAX`].
const REGISTER_RETRY_MIN: Duration = Duration::from_secs(2);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Ended {
    Shutdown,
    Closed(String),
    Unsupported(f64),
}

/// Runs the connection to one server until shutdown.
pub(crate) async fn server_task(
    svc: Arc<Service>,
    url: String,
    status: Arc<ServerStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let ended = session(&svc, &url, &status, &mut stop).await;
        // Consecutive failures grow the backoff; a session that got as far as the server
        // key (a working server) starts the count again.
        let established = status.connected.load(Ordering::Relaxed);
        status.connected.store(false, Ordering::Relaxed);
        status.registered.store(0, Ordering::Relaxed);
        let wait = match ended {
            Ended::Shutdown => return,
            Ended::Unsupported(p) => {
                tracing::error!(server = %url, protocol = p, "server protocol is newer than 1: not connecting; retrying in 5 min");
                Duration::from_secs(300)
            }
            Ended::Closed(why) => {
                if established || started.elapsed() > Duration::from_secs(60) {
                    attempt = 0;
                }
                let wait = backoff(attempt, rand::random_range(0.5..1.0));
                attempt = attempt.saturating_add(1);
                tracing::warn!(server = %url, reason = %Escaped(&why), retry_in_ms = wait.as_millis() as u64, "HAS connection ended");
                wait
            }
        };
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The wait before reconnection attempt `attempt` (0-based): 250 ms doubling, capped at 5 s,
/// times `jitter` (at most 1).
fn backoff(attempt: u32, jitter: f64) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(7))
        .min(BACKOFF_MAX)
        .mul_f64(jitter.clamp(0.0, 1.0))
}

/// Frames from a relay are bounded like the relay bounds its own (has-protocol's frame
/// limit): a malicious relay cannot make the service buffer 64 MiB messages.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

fn parse_server_key(s: &str) -> Option<PublicKey> {
    PublicKey::from_str_with_prefix(s, "STM")
        .or_else(|_| PublicKey::from_str_with_prefix(s, "TST"))
        .ok()
}

/// One `register_req` per account (one bad account cannot block the others), for every
/// account we hold keys for that is not in `done`.
fn register_frames(svc: &Service, server_key: &PublicKey, done: &HashSet<String>) -> Vec<String> {
    svc.keys
        .accounts()
        .iter()
        .filter(|(name, _)| !done.contains(*name))
        .filter_map(|(name, keys)| {
            let lowest = keys.lowest()?;
            let account = has_protocol::AccountName::new(name).ok()?;
            let proof = pok::encode(
                &svc.pok_cache.channel(lowest, server_key),
                &now_ms().to_string(),
            );
            let req = PksaToRelay::RegisterReq(RegisterReq {
                app: svc.pksa_name.clone(),
                accounts: vec![RegisterAccount {
                    name: account,
                    pok: Some(proof),
                    key_type: None,
                    challenge: None,
                }],
            });
            frame::encode(&req).ok()
        })
        .collect()
}

async fn session(
    svc: &Arc<Service>,
    url: &str,
    status: &ServerStatus,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let connect = tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true),
    );
    let ws = tokio::select! {
        r = connect => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return Ended::Closed(format!("connect: {e}")),
            Err(_) => return Ended::Closed("connect timed out".into()),
        },
        _ = stop.changed() => return Ended::Shutdown,
    };
    let (mut sink, mut source) = ws.split();
    // Read per frame: a reload that turns payload logging off applies at once.
    let show = |t: &str| {
        if svc.settings().log_payloads {
            Escaped(t).to_string()
        } else {
            frame::redact_for_log(t)
        }
    };

    // connected → protocol check → key_req → key_ack.
    let mut server_key: Option<PublicKey> = None;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT * 2;
    let mut asked_key = false;
    while server_key.is_none() {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, source.next()) => match m {
                Ok(Some(Ok(m))) => m,
                Ok(_) => return Ended::Closed("closed during the handshake".into()),
                Err(_) => return Ended::Closed("handshake timed out".into()),
            },
            _ = stop.changed() => return Ended::Shutdown,
        };
        let Message::Text(t) = msg else { continue };
        tracing::debug!(server = %url, frame = %show(t.as_str()), "in");
        match frame::parse::<RelayToPksa>(t.as_str()) {
            Ok(RelayToPksa::Connected(c)) => {
                let p = c.protocol.map(|p| p.0).unwrap_or(0.0);
                if p > 1.0 {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Unsupported(p);
                }
                if !asked_key {
                    asked_key = true;
                    if let Ok(req) = frame::encode(&PksaToRelay::KeyReq)
                        && sink.send(Message::Text(req.into())).await.is_err()
                    {
                        return Ended::Closed("send failed".into());
                    }
                }
            }
            Ok(RelayToPksa::KeyAck(k)) => match parse_server_key(&k.key) {
                Some(key) => server_key = Some(key),
                None => {
                    return Ended::Closed(format!(
                        "key_ack carries an invalid key {}",
                        Escaped(&k.key)
                    ));
                }
            },
            _ => {}
        }
    }
    let Some(server_key) = server_key else {
        return Ended::Closed("no server key".into());
    };
    status.connected.store(true, Ordering::Relaxed);
    tracing::info!(server = %url, server_key = %server_key, "connected to HAS server");
    for f in register_frames(svc, &server_key, &HashSet::new()) {
        tracing::debug!(server = %url, frame = %show(&f), "out");
        if sink.send(Message::Text(f.into())).await.is_err() {
            return Ended::Closed("send failed".into());
        }
    }
    // Accounts not acknowledged are registered again, with backoff.
    let mut register_wait = REGISTER_RETRY_MIN;
    let mut register_retry = Box::pin(tokio::time::sleep(register_wait));

    let (out_tx, mut out_rx) = mpsc::channel::<String>(4096);
    let mut handlers = tokio::task::JoinSet::new();
    let mut registered: HashSet<String> = HashSet::new();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_pong = Instant::now();
    let server_key = Arc::new(server_key);
    let ended = loop {
        tokio::select! {
            msg = source.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break Ended::Closed(e.to_string()),
                    None => break Ended::Closed("server closed the connection".into()),
                };
                match msg {
                    Message::Text(t) => {
                        tracing::debug!(server = %url, frame = %show(t.as_str()), "in");
                        match frame::parse::<RelayToPksa>(t.as_str()) {
                            Ok(RelayToPksa::RegisterAck(a)) => {
                                // Only accounts we registered count (a relay names any account).
                                if svc.keys.account(a.account.as_str()).is_none() {
                                    continue;
                                }
                                registered.insert(a.account.to_string());
                                status.registered.store(registered.len() as u64, Ordering::Relaxed);
                                tracing::info!(server = %url, account = %a.account, "registered");
                            }
                            Ok(frame @ (RelayToPksa::AuthReq(_) | RelayToPksa::SignReq(_) | RelayToPksa::ChallengeReq(_))) => {
                                let req = match Request::from_frame(frame) {
                                    Some(Ok(r)) => r,
                                    Some(Err(id)) => {
                                        // Before any crypto: the relay chose this id, and every
                                        // reply's POK would be a memo over it.
                                        svc.counters.decision("request", "bad_request_id");
                                        tracing::warn!(server = %url, uuid = %Escaped(id.as_str()), "request id is not an RFC 4122 uuid: ignored");
                                        continue;
                                    }
                                    None => continue,
                                };
                                // Session lookup and nonce reservation follow the arrival order;
                                // the rest runs concurrently.
                                let pre = request::preflight(svc, &req);
                                let (svc, key, out) = (svc.clone(), server_key.clone(), out_tx.clone());
                                handlers.spawn(async move {
                                    if let Some(reply) = request::handle(&svc, &key, req, pre).await {
                                        match frame::encode(&reply) {
                                            Ok(t) => { let _ = out.send(t).await; }
                                            Err(e) => tracing::error!(error = %e, "reply does not pass its schema; not sent"),
                                        }
                                    }
                                });
                            }
                            Ok(RelayToPksa::Error(e)) => tracing::warn!(server = %url, error = %Escaped(&e.error), "server error"),
                            Ok(RelayToPksa::KeyAck(k)) => {
                                if let Some(key) = parse_server_key(&k.key)
                                    && key != *server_key {
                                        break Ended::Closed("the server key changed: reconnecting to re-register".into());
                                    }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(server = %url, error = %Escaped(&e.to_string()), "unreadable frame ignored"),
                        }
                    }
                    Message::Pong(_) => last_pong = Instant::now(),
                    Message::Close(_) => {
                        // Answer the relay's Close (RFC 6455 §5.5.1) before leaving.
                        let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                        break Ended::Closed("server closed the connection".into());
                    }
                    _ => {}
                }
            }
            Some(text) = out_rx.recv() => {
                tracing::debug!(server = %url, frame = %show(&text), "out");
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break Ended::Closed("send failed".into());
                }
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > PING_INTERVAL * 3 {
                    break Ended::Closed("no pong for three heartbeats".into());
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break Ended::Closed("send failed".into());
                }
            }
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            _ = &mut register_retry => {
                let frames = register_frames(svc, &server_key, &registered);
                if frames.is_empty() {
                    register_wait = REGISTER_RETRY_MIN;
                } else {
                    tracing::warn!(server = %url, accounts = frames.len(), retry_in_s = register_wait.as_secs(), "accounts not registered: registering them again");
                    register_wait = (register_wait * 2).min(REGISTER_RETRY_MAX);
                }
                register_retry.as_mut().reset(tokio::time::Instant::now() + register_wait);
                let mut failed = false;
                for f in frames {
                    tracing::debug!(server = %url, frame = %show(&f), "out");
                    if sink.send(Message::Text(f.into())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break Ended::Closed("send failed".into());
                }
            }
            _ = stop.changed() => break Ended::Shutdown,
        }
    };
    if matches!(ended, Ended::Shutdown) {
        // Finish in-flight requests and send their replies before closing.
        let drain = async {
            loop {
                tokio::select! {
                    done = handlers.join_next() => if done.is_none() { break },
                    Some(text) = out_rx.recv() => { let _ = sink.send(Message::Text(text.into())).await; }
                }
            }
            while let Ok(text) = out_rx.try_recv() {
                let _ = sink.send(Message::Text(text.into())).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "pksa-service shutting down".into(),
            })))
            .await;
    } else {
        // The answers are stored; the server re-delivers pending requests after we
        // re-register, and they are answered from the store.
        handlers.detach_all();
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_back_after_a_long_outage_is_retried_within_5_s() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(1));
        for attempt in [5, 10, 100, u32::MAX] {
            assert!(backoff(attempt, 1.0) <= Duration::from_secs(5));
            assert!(backoff(attempt, 0.5) >= Duration::from_millis(2500));
        }
    }
}
