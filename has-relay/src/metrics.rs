//! Prometheus metrics of the relay (text exposition format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the relay latency histogram.
const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Relay counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open sockets.
    pub connections: AtomicU64,
    /// Accounts with at least one registered PKSA socket.
    pub registered_accounts: AtomicU64,
    /// Requests waiting for an answer.
    pub queue_depth: AtomicU64,
    /// (command, outcome) → count.
    frames: Mutex<BTreeMap<(String, String), u64>>,
    latency_buckets: [AtomicU64; 9],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Counts one frame of `cmd` with `outcome` (`accepted`, `invalid`, `relayed`, …).
    pub fn count(&self, cmd: &str, outcome: &str) {
        if let Ok(mut m) = self.frames.lock() {
            *m.entry((cmd.to_owned(), outcome.to_owned())).or_insert(0) += 1;
        }
    }

    /// Records the time from a request's arrival to its answer.
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b
                && let Some(c) = self.latency_buckets.get(i)
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        g(
            &mut s,
            "has_relay_connections",
            "Open WebSocket connections.",
            self.connections.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "has_relay_registered_accounts",
            "Accounts with a registered PKSA.",
            self.registered_accounts.load(Ordering::Relaxed),
        );
        g(
            &mut s,
            "has_relay_queue_depth",
            "Requests waiting for an answer.",
            self.queue_depth.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP has_relay_frames_total Frames received, by command and outcome.\n# TYPE has_relay_frames_total counter"
        );
        if let Ok(m) = self.frames.lock() {
            for ((cmd, outcome), v) in m.iter() {
                let _ = writeln!(
                    s,
                    "has_relay_frames_total{{cmd=\"{cmd}\",outcome=\"{outcome}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP has_relay_latency_seconds Time from a request to its answer.\n# TYPE has_relay_latency_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let v = self
                .latency_buckets
                .get(i)
                .map(|c| c.load(Ordering::Relaxed))
                .unwrap_or(0);
            let _ = writeln!(s, "has_relay_latency_seconds_bucket{{le=\"{b}\"}} {v}");
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "has_relay_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "has_relay_latency_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "has_relay_latency_seconds_count {count}");
        s
    }
}
