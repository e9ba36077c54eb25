//! Prometheus metrics of the relay (text exposition format), and the pieces the service's
//! metrics share: a latency histogram and label-value escaping.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A label value as the exposition format wants it: backslash, double quote and line feed
/// escaped (a value from a config file or a peer cannot break the line).
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A latency histogram (cumulative buckets, sum and count), lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (seconds, ascending; `+Inf` is added).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The count first, the buckets after, and `render` reads them the other way round:
        // a scrape during an observation never shows a bucket above the count.
        self.count.fetch_add(1, Ordering::SeqCst);
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *b {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Writes `# HELP`, `# TYPE … histogram`, every `_bucket` (with `+Inf`), `_sum` and
    /// `_count`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::SeqCst)
            );
        }
        let count = self.count.load(Ordering::SeqCst);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Upper bounds (seconds) of the relay latency histogram.
const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Relay counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    /// Open sockets.
    pub connections: AtomicU64,
    /// Accounts with at least one registered PKSA socket.
    pub registered_accounts: AtomicU64,
    /// Requests waiting for an answer.
    pub queue_depth: AtomicU64,
    /// (command, outcome) → count.
    frames: Mutex<BTreeMap<(String, String), u64>>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: AtomicU64::new(0),
            registered_accounts: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            frames: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&BUCKETS),
        }
    }
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
        self.latency.observe(d);
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
                    "has_relay_frames_total{{cmd=\"{}\",outcome=\"{}\"}} {v}",
                    label(cmd),
                    label(outcome)
                );
            }
        }
        self.latency.render(
            &mut s,
            "has_relay_latency_seconds",
            "Time from a request to its answer.",
        );
        s
    }
}

/// The cluster-mode gauge: 1 while the cluster store (Redis) is reachable.
pub fn cluster_gauge(up: bool) -> String {
    format!(
        "# HELP has_relay_cluster_up 1 while the cluster store (Redis) is reachable.\n# TYPE has_relay_cluster_up gauge\nhas_relay_cluster_up {}\n",
        u8::from(up)
    )
}

/// Checks an exposition text the way a scraper reads it: every sample is `name{labels} value`
/// with quoted, escaped label values and a number; every sample belongs to a family that has
/// `# HELP` and `# TYPE`; a counter's samples end in `_total`; a histogram has a `+Inf`
/// bucket, `_sum` and `_count`. Err names the first line that breaks a rule.
pub fn check_exposition(text: &str) -> Result<(), String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                return Err(format!("bad TYPE line: {line}"));
            };
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, after) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(format!("no value: {line}")),
        };
        let value = if let Some(labels) = after.strip_prefix('{') {
            let mut rest = labels;
            loop {
                let Some(eq) = rest.find("=\"") else {
                    return Err(format!("bad labels: {line}"));
                };
                rest = &rest[eq + 2..];
                let mut escaped = false;
                let mut end = None;
                for (i, c) in rest.char_indices() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => return Err(format!("bad escape: {line}")),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        (false, '\n') => return Err(format!("raw line feed: {line}")),
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    return Err(format!("unterminated label value: {line}"));
                };
                rest = &rest[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if let Some(r) = rest.strip_prefix('}') {
                    break r;
                } else {
                    return Err(format!("bad labels: {line}"));
                }
            }
        } else {
            after
        };
        let value = value.trim();
        if value.parse::<f64>().is_err() && !matches!(value, "+Inf" | "-Inf" | "NaN") {
            return Err(format!("bad value {value:?}: {line}"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        let Some(kind) = types.get(family) else {
            return Err(format!("sample of an undeclared family: {line}"));
        };
        if !helped.contains(family) {
            return Err(format!("family without HELP: {line}"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter sample not ending in _total: {line}"));
        }
        seen.entry(family.to_owned())
            .or_default()
            .push(line.to_owned());
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let lines = seen.get(family).cloned().unwrap_or_default();
        for want in [
            format!("{family}_bucket{{le=\"+Inf\"}} "),
            format!("{family}_sum "),
            format!("{family}_count "),
        ] {
            if !lines.iter().any(|l| l.starts_with(&want)) {
                return Err(format!("histogram {family} has no {want:?}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_labels_and_complete_histograms_pass_the_check() {
        let m = Metrics::default();
        m.count("sign_req", "a \"quoted\"\\ value\nwith a line feed");
        m.observe_latency(Duration::from_millis(3));
        let text = m.render();
        assert_eq!(check_exposition(&text), Ok(()), "{text}");
        assert!(text.contains("has_relay_latency_seconds_count 1"), "{text}");
        // What the check refuses (it can fail).
        for bad in [
            "# HELP x_seconds h\n# TYPE x_seconds histogram\nx_seconds_sum 1\n",
            "# HELP y h\n# TYPE y counter\ny 1\n",
            "# HELP z h\n# TYPE z gauge\nz{a=\"b\"c\"} 1\n",
            "w 1\n",
        ] {
            assert!(check_exposition(bad).is_err(), "{bad}");
        }
    }
}
