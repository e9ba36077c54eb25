//! A dry-run Hive JSON-RPC node: the only test double this project allows.
//!
//! It serves dynamic global properties (a simulated head block every 3 s) and account
//! lookups from a configured account list (the JSON array `condenser_api.get_accounts`
//! returns), and on broadcast it checks a transaction the way hived does — chain id (through
//! the signatures), TaPoS, expiration window, canonical signatures, every required authority
//! at its level (HF28 strict), duplicates — then records it and returns its id. Nothing
//! reaches a real chain: every response carries `"dry_run": true` and an `x-dry-run` header.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::accounts::{Account, AccountMap, has_authority};
pub use crate::accounts::{AccountsFileError, load_accounts_file, parse_accounts};
use crate::tx::{ChainId, MAX_EXPIRATION_SECS, SignedTransaction};
use crate::types::TimePointSec;

/// Seconds between simulated blocks.
const BLOCK_INTERVAL: u64 = 3;
/// Block number at the node's start.
const FIRST_BLOCK: u64 = 80_000_000;

/// JSON-RPC's code for an unknown method.
const METHOD_NOT_FOUND: i64 = -32601;

/// A recorded broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Transaction id.
    pub id: String,
    /// Block number it was "included" in.
    pub block_num: u64,
    /// The transaction JSON as received.
    pub transaction: Value,
}

#[derive(Debug)]
struct Inner {
    accounts: AccountMap,
    raw_accounts: HashMap<String, Value>,
    recorded: Vec<Recorded>,
    ids: HashSet<String>,
    /// Calls served, by method name as received.
    calls: HashMap<String, u64>,
}

/// The dry-run node's state, shared with the HTTP handlers; tests read it directly.
#[derive(Debug)]
pub struct DryRunNode {
    chain: ChainId,
    started: u64,
    inner: Mutex<Inner>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn block_id(num: u64) -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..4].copy_from_slice(&(num as u32).to_be_bytes());
    let h = Sha256::new()
        .chain_update(b"dry-run block")
        .chain_update(num.to_le_bytes())
        .finalize();
    id[4..].copy_from_slice(h.get(..16).unwrap_or(&[0u8; 16]));
    id
}

struct RpcFailure {
    code: i64,
    message: String,
}

fn fail(code: i64, message: impl Into<String>) -> RpcFailure {
    RpcFailure {
        code,
        message: message.into(),
    }
}

impl DryRunNode {
    /// A node for `chain` serving `accounts`.
    pub fn new(chain: ChainId, accounts: Vec<Account>) -> Arc<Self> {
        let pairs = accounts
            .into_iter()
            .map(|a| {
                let raw = serde_json::to_value(&a).unwrap_or(Value::Null);
                (a, raw)
            })
            .collect();
        DryRunNode::with_raw_accounts(chain, pairs)
    }

    /// A node serving accounts with the exact JSON a real node returned for them.
    pub fn with_raw_accounts(chain: ChainId, accounts: Vec<(Account, Value)>) -> Arc<Self> {
        let mut map = AccountMap::new();
        let mut raw = HashMap::new();
        for (a, v) in accounts {
            raw.insert(a.name.clone(), v);
            map.insert(a.name.clone(), a);
        }
        Arc::new(DryRunNode {
            chain,
            started: now_secs(),
            inner: Mutex::new(Inner {
                accounts: map,
                raw_accounts: raw,
                recorded: vec![],
                ids: HashSet::new(),
                calls: HashMap::new(),
            }),
        })
    }

    /// Adds or replaces an account.
    pub fn put_account(&self, account: Account) {
        if let Ok(mut inner) = self.inner.lock() {
            let raw = serde_json::to_value(&account).unwrap_or(Value::Null);
            inner.raw_accounts.insert(account.name.clone(), raw);
            inner.accounts.insert(account.name.clone(), account);
        }
    }

    /// Every transaction accepted so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.inner
            .lock()
            .map(|i| i.recorded.clone())
            .unwrap_or_default()
    }

    /// How many calls of `method` (as received, e.g.
    /// `condenser_api.get_dynamic_global_properties`) the node has served.
    pub fn calls(&self, method: &str) -> u64 {
        self.inner
            .lock()
            .map(|i| i.calls.get(method).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn head(&self) -> (u64, u64) {
        let elapsed = now_secs().saturating_sub(self.started) / BLOCK_INTERVAL;
        let num = FIRST_BLOCK + elapsed;
        (num, self.started + elapsed * BLOCK_INTERVAL)
    }

    fn dgp(&self) -> Value {
        let (num, time) = self.head();
        json!({
            "head_block_number": num,
            "head_block_id": hex::encode(block_id(num)),
            "time": TimePointSec(time as u32).to_string(),
            "last_irreversible_block_num": num.saturating_sub(20),
            "current_witness": "dry-run",
            "dry_run": true,
        })
    }

    fn get_accounts(&self, names: &[Value]) -> Value {
        let Ok(inner) = self.inner.lock() else {
            return json!([]);
        };
        Value::Array(
            names
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|n| inner.raw_accounts.get(n).cloned())
                .collect(),
        )
    }

    /// Verifies and records a signed transaction; returns (id, block_num).
    fn broadcast(&self, tx_json: &Value) -> Result<(String, u64), RpcFailure> {
        let tx = SignedTransaction::deserialize(tx_json)
            .map_err(|e| fail(-32602, format!("invalid transaction: {e}")))?;
        // hived validates every operation (`transaction::validate`) before it looks at the
        // expiration, the reference block or the signatures.
        for op in &tx.operations {
            op.validate()
                .map_err(|e| fail(-32000, format!("Assert Exception: {e}")))?;
        }
        let unsigned = tx.transaction();
        let id = unsigned.id().map_err(|e| fail(-32602, e.to_string()))?;
        let (head, head_time) = self.head();
        // Expiration window.
        let exp = u64::from(tx.expiration.0);
        if exp <= head_time {
            return Err(fail(
                -32000,
                format!(
                    "transaction expiration exception: expiration {} <= head block time",
                    tx.expiration
                ),
            ));
        }
        if exp > head_time + u64::from(MAX_EXPIRATION_SECS) {
            return Err(fail(
                -32000,
                "transaction expiration exception: trx.expiration <= now + HIVE_MAX_TIME_UNTIL_EXPIRATION",
            ));
        }
        // TaPoS: the referenced block must be one of the last 65536.
        let ref_num = u64::from(tx.ref_block_num);
        let candidate = (head & !0xffff) | ref_num;
        let block = if candidate > head {
            candidate.saturating_sub(0x10000)
        } else {
            candidate
        };
        let id_bytes = block_id(block);
        let prefix = u32::from_le_bytes([id_bytes[4], id_bytes[5], id_bytes[6], id_bytes[7]]);
        if block < FIRST_BLOCK || prefix != tx.ref_block_prefix {
            return Err(fail(
                -32000,
                "tapos: transaction's reference block does not match",
            ));
        }
        if tx.operations.is_empty() {
            return Err(fail(-32000, "transaction has no operations"));
        }
        // Signatures (recovered with our chain id: a wrong chain id recovers wrong keys).
        let signers: HashSet<_> = tx
            .signers(&self.chain)
            .map_err(|e| fail(-32000, e.to_string()))?
            .into_iter()
            .collect();
        let required = unsigned.required();
        if let Some(other) = required.other.first() {
            return Err(fail(
                -32000,
                format!(
                    "missing required other authority: {other} (not supported by the dry-run node)"
                ),
            ));
        }
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| fail(-32603, "node state poisoned"))?;
        for (account, level) in &required.accounts {
            let acct = inner
                .accounts
                .get(account)
                .ok_or_else(|| fail(-32000, format!("unknown account {account}")))?;
            if !has_authority(acct, *level, &signers, &inner.accounts) {
                return Err(fail(
                    -32000,
                    format!(
                        "missing required {level} authority:Missing {level} Authority {account}"
                    ),
                ));
            }
        }
        if inner.ids.contains(&id) {
            return Err(fail(
                -32000,
                format!("Duplicate transaction check failed: {id}"),
            ));
        }
        inner.ids.insert(id.clone());
        inner.recorded.push(Recorded {
            id: id.clone(),
            block_num: head + 1,
            transaction: tx_json.clone(),
        });
        Ok((id, head + 1))
    }

    fn dispatch(&self, method: &str, params: &Value) -> Result<Value, RpcFailure> {
        // Legacy form: {"method": "call", "params": [api, method, args]}.
        if method == "call" {
            let api = params.get(0).and_then(Value::as_str).unwrap_or_default();
            let m = params.get(1).and_then(Value::as_str).unwrap_or_default();
            let args = params.get(2).cloned().unwrap_or(json!([]));
            return self.dispatch(&format!("{api}.{m}"), &args);
        }
        let answer = self.answer(method, params);
        // Only methods the node serves are counted (no growth from arbitrary names).
        if !matches!(
            answer,
            Err(RpcFailure {
                code: METHOD_NOT_FOUND,
                ..
            })
        ) && let Ok(mut inner) = self.inner.lock()
        {
            *inner.calls.entry(method.to_owned()).or_insert(0) += 1;
        }
        answer
    }

    fn answer(&self, method: &str, params: &Value) -> Result<Value, RpcFailure> {
        match method {
            "condenser_api.get_dynamic_global_properties" | "database_api.get_dynamic_global_properties" => Ok(self.dgp()),
            "condenser_api.get_accounts" => {
                let names = params.get(0).and_then(Value::as_array).cloned().unwrap_or_default();
                Ok(self.get_accounts(&names))
            }
            "database_api.find_accounts" => {
                let names = params.get("accounts").and_then(Value::as_array).cloned().unwrap_or_default();
                Ok(json!({"accounts": self.get_accounts(&names)}))
            }
            "condenser_api.broadcast_transaction_synchronous" => {
                let tx = params.get(0).ok_or_else(|| fail(-32602, "missing transaction"))?;
                let (id, block_num) = self.broadcast(tx)?;
                Ok(json!({"id": id, "block_num": block_num, "trx_num": 0, "expired": false, "dry_run": true}))
            }
            "condenser_api.broadcast_transaction" => {
                let tx = params.get(0).ok_or_else(|| fail(-32602, "missing transaction"))?;
                self.broadcast(tx)?;
                Ok(json!({}))
            }
            "network_broadcast_api.broadcast_transaction" => {
                let tx = params.get("trx").ok_or_else(|| fail(-32602, "missing trx"))?;
                self.broadcast(tx)?;
                Ok(json!({}))
            }
            "dry_run.get_transactions" => Ok(Value::Array(
                self.recorded()
                    .into_iter()
                    .map(|r| json!({"id": r.id, "block_num": r.block_num, "transaction": r.transaction}))
                    .collect(),
            )),
            other => Err(fail(METHOD_NOT_FOUND, format!("method not found: {other} (dry-run node)"))),
        }
    }

    fn handle(&self, body: &[u8]) -> Value {
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            return json!({"jsonrpc": "2.0", "id": null, "dry_run": true, "error": {"code": -32700, "message": "parse error"}});
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = req.get("params").cloned().unwrap_or(json!([]));
        match self.dispatch(method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result, "dry_run": true}),
            Err(f) => {
                json!({"jsonrpc": "2.0", "id": id, "dry_run": true, "error": {"code": f.code, "message": f.message}})
            }
        }
    }
}

async fn rpc_handler(State(node): State<Arc<DryRunNode>>, body: Bytes) -> Response {
    let out = node.handle(&body);
    let mut resp = (StatusCode::OK, axum::Json(out)).into_response();
    resp.headers_mut()
        .insert("x-dry-run", HeaderValue::from_static("true"));
    resp
}

/// Serves `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Arc<DryRunNode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/", post(rpc_handler))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds 127.0.0.1:`port` (0 = any free port), spawns the server, returns its URL.
pub async fn spawn(
    node: Arc<DryRunNode>,
    port: u16,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = serve(listener, node, std::future::pending()).await {
            tracing::error!(error = %e, "dry-run node stopped");
        }
    });
    Ok((format!("http://{addr}/"), handle))
}
