//! JSON-RPC 2.0 client for Hive API nodes, with timeouts, retries and failover.
//!
//! Calls go to the preferred node; a transport failure, a timeout or an HTTP error moves to
//! the next node (and makes it the preferred one). A JSON-RPC error is the node's answer and
//! is returned as a typed [`RpcError::Node`] without failover. Broadcasting is safe to retry
//! on another node: if the first one did accept it, the second answers "duplicate
//! transaction", which [`RpcClient::broadcast`] reports as success with the known id.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::Account;
use crate::tx::{HeadBlock, SignedTransaction};

/// What kind of refusal a node gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeErrorKind {
    /// A required authority (signature) is missing.
    MissingAuthority,
    /// The transaction was already included.
    Duplicate,
    /// The transaction expired or expires too late.
    Expired,
    /// The TaPoS reference block is unknown.
    Tapos,
    /// Anything else the node refused.
    Other,
}

impl NodeErrorKind {
    fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        if m.contains("missing") && m.contains("authority") {
            NodeErrorKind::MissingAuthority
        } else if m.contains("duplicate") {
            NodeErrorKind::Duplicate
        } else if m.contains("expir") {
            NodeErrorKind::Expired
        } else if m.contains("tapos") {
            NodeErrorKind::Tapos
        } else {
            NodeErrorKind::Other
        }
    }

    /// Stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeErrorKind::MissingAuthority => "missing_authority",
            NodeErrorKind::Duplicate => "duplicate",
            NodeErrorKind::Expired => "expired",
            NodeErrorKind::Tapos => "tapos",
            NodeErrorKind::Other => "other",
        }
    }
}

/// Errors of the RPC client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No node is configured.
    #[error("no Hive API node configured")]
    NoNodes,
    /// A node refused the call (a JSON-RPC error).
    #[error("node {node} refused {method}: {message}")]
    Node {
        /// Which node.
        node: String,
        /// The method.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Node message.
        message: String,
        /// Classification.
        kind: NodeErrorKind,
    },
    /// Every node failed at the transport level.
    #[error("all Hive API nodes failed for {method}: {last}")]
    Unavailable {
        /// The method.
        method: String,
        /// The last failure.
        last: String,
    },
    /// A node answered something that is not the expected result.
    #[error("unexpected response to {method}: {message}")]
    BadResponse {
        /// The method.
        method: String,
        /// What was wrong.
        message: String,
    },
}

/// Tuning of the client.
#[derive(Debug, Clone)]
pub struct RpcOptions {
    /// Per-request timeout.
    pub timeout: Duration,
    /// How many times the whole node list is tried.
    pub rounds: u32,
    /// Pause between rounds.
    pub round_backoff: Duration,
}

impl Default for RpcOptions {
    fn default() -> Self {
        RpcOptions {
            timeout: Duration::from_secs(8),
            rounds: 2,
            round_backoff: Duration::from_millis(200),
        }
    }
}

/// Per-node counters (for metrics).
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Successful calls.
    pub ok: AtomicU64,
    /// Transport failures and timeouts.
    pub failures: AtomicU64,
    /// JSON-RPC errors returned.
    pub refusals: AtomicU64,
    /// Sum of latencies of successful calls, µs.
    pub latency_us_total: AtomicU64,
}

/// A JSON-RPC client over several nodes.
#[derive(Debug)]
pub struct RpcClient {
    nodes: Vec<String>,
    stats: Vec<NodeStats>,
    http: reqwest::Client,
    options: RpcOptions,
    preferred: AtomicUsize,
    next_id: AtomicU64,
}

/// What a synchronous broadcast returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Transaction id (40 hex).
    pub id: String,
    /// Block it was included in (0 if unknown, e.g. after a duplicate answer).
    pub block_num: u64,
    /// Whether the node said this was a dry run (our local test node).
    pub dry_run: bool,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl RpcClient {
    /// A client for `nodes` (http:// or https:// URLs), tried in order.
    pub fn new(nodes: Vec<String>, options: RpcOptions) -> Result<Self, RpcError> {
        if nodes.is_empty() {
            return Err(RpcError::NoNodes);
        }
        // reqwest is built without a default rustls provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            // A burst of broadcasts opens many connections; keep a few for the next one and
            // close the rest (each holds buffers here and a connection slot on the node).
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| RpcError::Unavailable {
                method: "client".into(),
                last: e.to_string(),
            })?;
        let stats = nodes.iter().map(|_| NodeStats::default()).collect();
        Ok(RpcClient {
            nodes,
            stats,
            http,
            options,
            preferred: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// The configured nodes.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Counters per node, in the order of [`RpcClient::nodes`].
    pub fn stats(&self) -> &[NodeStats] {
        &self.stats
    }

    /// Calls `method` with `params`, failing over between nodes on transport errors.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.call_full(method, params).await.map(|(v, _)| v)
    }

    async fn call_full(&self, method: &str, params: Value) -> Result<(Value, bool), RpcError> {
        let n = self.nodes.len();
        let mut last = String::from("no attempt");
        for round in 0..self.options.rounds.max(1) {
            if round > 0 {
                tokio::time::sleep(self.options.round_backoff).await;
            }
            let start = self.preferred.load(Ordering::Relaxed);
            for step in 0..n {
                let idx = (start + step) % n;
                let Some(node) = self.nodes.get(idx) else {
                    continue;
                };
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
                let t0 = Instant::now();
                match self.post(node, &body).await {
                    Ok(env) => {
                        if let Some(err) = env.error {
                            self.bump(idx, |s| &s.refusals);
                            return Err(RpcError::Node {
                                node: node.clone(),
                                method: method.to_owned(),
                                code: err.code,
                                kind: NodeErrorKind::classify(&err.message),
                                message: err.message,
                            });
                        }
                        let Some(result) = env.result else {
                            self.bump(idx, |s| &s.failures);
                            last = format!("{node}: response without result");
                            continue;
                        };
                        self.bump(idx, |s| &s.ok);
                        if let Some(s) = self.stats.get(idx) {
                            s.latency_us_total
                                .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                        }
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok((result, env.dry_run.unwrap_or(false)));
                    }
                    Err(e) => {
                        self.bump(idx, |s| &s.failures);
                        tracing::warn!(node = %node, method, error = %e, "Hive API node failed; trying the next one");
                        last = format!("{node}: {e}");
                    }
                }
            }
        }
        Err(RpcError::Unavailable {
            method: method.to_owned(),
            last,
        })
    }

    fn bump(&self, idx: usize, f: impl Fn(&NodeStats) -> &AtomicU64) {
        if let Some(s) = self.stats.get(idx) {
            f(s).fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn post(&self, node: &str, body: &Value) -> Result<Envelope, String> {
        let resp = self.http.post(node).json(body).send().await.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                e.to_string()
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        resp.json::<Envelope>()
            .await
            .map_err(|e| format!("invalid JSON-RPC response: {e}"))
    }

    /// The head block for TaPoS (`condenser_api.get_dynamic_global_properties`).
    pub async fn head_block(&self) -> Result<HeadBlock, RpcError> {
        let method = "condenser_api.get_dynamic_global_properties";
        let v = self.call(method, json!([])).await?;
        serde_json::from_value(v).map_err(|e| RpcError::BadResponse {
            method: method.into(),
            message: e.to_string(),
        })
    }

    /// Accounts by name (`condenser_api.get_accounts`); unknown names are simply absent.
    pub async fn get_accounts(&self, names: &[String]) -> Result<Vec<Account>, RpcError> {
        let method = "condenser_api.get_accounts";
        let v = self.call(method, json!([names])).await?;
        serde_json::from_value(v).map_err(|e| RpcError::BadResponse {
            method: method.into(),
            message: e.to_string(),
        })
    }

    /// Broadcasts and waits for inclusion (`condenser_api.broadcast_transaction_synchronous`).
    /// Returns the transaction id; checks it equals the one we computed.
    pub async fn broadcast(&self, tx: &SignedTransaction) -> Result<Broadcast, RpcError> {
        let method = "condenser_api.broadcast_transaction_synchronous";
        let bad = |m: String| RpcError::BadResponse {
            method: method.into(),
            message: m,
        };
        let expected = tx.transaction().id().map_err(|e| bad(e.to_string()))?;
        let json = tx.to_json().map_err(|e| bad(e.to_string()))?;
        match self.call_full(method, json!([json])).await {
            Ok((v, dry_run)) => {
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or(&expected)
                    .to_owned();
                if id != expected {
                    return Err(bad(format!("node reports id {id}, expected {expected}")));
                }
                let block_num = v.get("block_num").and_then(Value::as_u64).unwrap_or(0);
                Ok(Broadcast {
                    id,
                    block_num,
                    dry_run,
                })
            }
            // A duplicate after a failover means an earlier attempt went through.
            Err(RpcError::Node {
                kind: NodeErrorKind::Duplicate,
                ..
            }) if self.nodes.len() > 1 => Ok(Broadcast {
                id: expected,
                block_num: 0,
                dry_run: false,
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            NodeErrorKind::classify(
                "missing required posting authority:Missing Posting Authority alice"
            ),
            NodeErrorKind::MissingAuthority
        );
        assert_eq!(
            NodeErrorKind::classify("Duplicate transaction check failed"),
            NodeErrorKind::Duplicate
        );
        assert_eq!(
            NodeErrorKind::classify("transaction expiration exception"),
            NodeErrorKind::Expired
        );
        assert_eq!(NodeErrorKind::classify("bad"), NodeErrorKind::Other);
    }
}
