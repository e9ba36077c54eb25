//! `/metrics` (Prometheus text), `/healthz`, `/readyz` on an optional loopback listener.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use has_relay::metrics::label;

use super::Service;

/// Renders the metrics text.
pub async fn render(svc: &Service) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP pksa_decisions_total Requests by command and decision.\n# TYPE pksa_decisions_total counter"
    );
    if let Ok(m) = svc.counters.decisions.lock() {
        for ((cmd, d), v) in m.iter() {
            let _ = writeln!(
                s,
                "pksa_decisions_total{{cmd=\"{}\",decision=\"{}\"}} {v}",
                label(cmd),
                label(d)
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP pksa_server_connected Whether the HAS server connection is up.\n# TYPE pksa_server_connected gauge"
    );
    for (url, st) in &svc.servers {
        let _ = writeln!(
            s,
            "pksa_server_connected{{server=\"{}\"}} {}",
            label(url),
            u8::from(st.connected.load(Ordering::Relaxed))
        );
    }
    let _ = writeln!(
        s,
        "# HELP pksa_server_registered_accounts Accounts registered on the server.\n# TYPE pksa_server_registered_accounts gauge"
    );
    for (url, st) in &svc.servers {
        let _ = writeln!(
            s,
            "pksa_server_registered_accounts{{server=\"{}\"}} {}",
            label(url),
            st.registered.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP pksa_server_reconnects_total Reconnections per server.\n# TYPE pksa_server_reconnects_total counter"
    );
    for (url, st) in &svc.servers {
        let _ = writeln!(
            s,
            "pksa_server_reconnects_total{{server=\"{}\"}} {}",
            label(url),
            st.reconnects.load(Ordering::Relaxed)
        );
    }
    let ok = svc.counters.broadcasts_ok.load(Ordering::Relaxed);
    let _ = writeln!(
        s,
        "# HELP pksa_broadcasts_total Broadcasts by result.\n# TYPE pksa_broadcasts_total counter"
    );
    let _ = writeln!(s, "pksa_broadcasts_total{{result=\"ok\"}} {ok}");
    let _ = writeln!(
        s,
        "pksa_broadcasts_total{{result=\"failed\"}} {}",
        svc.counters.broadcasts_failed.load(Ordering::Relaxed)
    );
    svc.counters.broadcast_latency.render(
        &mut s,
        "pksa_broadcast_latency_seconds",
        "How long successful broadcasts took.",
    );
    let _ = writeln!(
        s,
        "# HELP pksa_node_calls_total Hive API calls per node and result.\n# TYPE pksa_node_calls_total counter"
    );
    for (node, st) in svc.rpc.nodes().iter().zip(svc.rpc.stats()) {
        let _ = writeln!(
            s,
            "pksa_node_calls_total{{node=\"{}\",result=\"ok\"}} {}",
            label(node),
            st.ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "pksa_node_calls_total{{node=\"{}\",result=\"failure\"}} {}",
            label(node),
            st.failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "pksa_node_calls_total{{node=\"{}\",result=\"refused\"}} {}",
            label(node),
            st.refusals.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP pksa_spend_headroom Remaining amount (smallest unit) per spend limit and account.\n# TYPE pksa_spend_headroom gauge"
    );
    let settings = svc.settings();
    for rule in &settings.policy.rules {
        for l in rule.spend_limits.iter().flatten() {
            let Ok(max) = l.max.parse::<hive_chain::Asset>() else {
                continue;
            };
            let counter = format!("{}/{}", rule.id, max.symbol.name());
            for account in svc.keys.accounts().keys() {
                if !rule
                    .accounts
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|p| crate::policy::glob(p, account)))
                {
                    continue;
                }
                let (c, a, w) = (
                    counter.clone(),
                    account.clone(),
                    (l.window_hours * 3600.0) as u64,
                );
                let left = svc
                    .store
                    .call(move |conn| crate::state::spend::headroom(conn, &a, &c, max.amount, w))
                    .await;
                if let Ok(left) = left {
                    let _ = writeln!(
                        s,
                        "pksa_spend_headroom{{limit=\"{}\",account=\"{}\"}} {left}",
                        label(&counter),
                        label(account)
                    );
                }
            }
        }
    }
    s
}

/// Serves the endpoints until `stop` flips.
pub async fn serve(
    listener: tokio::net::TcpListener,
    svc: Arc<Service>,
    mut stop: watch::Receiver<bool>,
) {
    let m = svc.clone();
    let r = svc.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let svc = m.clone();
                async move { render(&svc).await }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let svc = r.clone();
                // Ready means: keys, registered, and the last write to the store succeeded.
                // No write per probe.
                async move {
                    match svc.readiness() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}\n", why.join("; ")),
                        ),
                    }
                }
            }),
        );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
}
