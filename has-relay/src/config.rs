//! Relay configuration: defaults, TOML file, command-line overrides.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where account public keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountSource {
    /// A JSON file in the format `condenser_api.get_accounts` returns.
    File(PathBuf),
    /// Hive API nodes (`condenser_api.get_accounts`), with a cache.
    Nodes(Vec<String>),
}

/// Everything the relay needs to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `connected.server`.
    pub server_name: String,
    /// Request lifetime (`connected.timeout`).
    pub timeout: Duration,
    /// Heartbeat (`connected.ping_rate`): a ping every interval; a socket that missed two
    /// pongs is closed.
    pub ping_rate: Duration,
    /// Largest accepted text frame.
    pub max_frame_bytes: usize,
    /// Concurrent sockets.
    pub max_connections: usize,
    /// Frames per second a socket may send (sustained), with a burst of 4× (default 500:
    /// service-mode apps such as bots send many requests over one socket).
    pub frames_per_second: u32,
    /// Pending (unanswered) requests per account. When full, the oldest request of the
    /// address (then connection) holding the most stops counting here, to make room for one
    /// holding fewer (fair share; it stays routable).
    pub max_pending_per_account: usize,
    /// Pending requests per connection.
    pub max_pending_per_socket: usize,
    /// Pending requests per client address (all its connections).
    pub max_pending_per_ip: usize,
    /// Bytes of all pending requests together, whoever sent them (default 128 MiB): the
    /// per-address caps bound one address, this bounds many.
    pub max_pending_bytes: usize,
    /// Accepts replies without `pok` from sockets registered for the account (0.8 PKSAs
    /// such as Hive Keychain Mobile). Off: every reply must carry a valid POK.
    pub allow_replies_without_pok: bool,
    /// Allowed difference between a registration POK's timestamp and our clock.
    pub pok_time_window: Duration,
    /// The persistent server key file (WIF, mode 0600), created on first start.
    pub key_file: PathBuf,
    /// Account keys for POK checks.
    pub accounts: AccountSource,
    /// How long account keys fetched from nodes are cached.
    pub account_cache_ttl: Duration,
    /// Optional Prometheus listener (loopback recommended).
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster mode: the Redis every node of the cluster shares (`redis://host:port/db`).
    /// Every node must use the same server key file contents.
    pub redis: Option<String>,
}

impl RelayConfig {
    /// Defaults for the given key file and account source.
    pub fn new(key_file: PathBuf, accounts: AccountSource) -> Self {
        RelayConfig {
            server_name: "has-relay".into(),
            timeout: Duration::from_secs(60),
            ping_rate: Duration::from_secs(30),
            max_frame_bytes: 512 * 1024,
            max_connections: 10_000,
            frames_per_second: 500,
            max_pending_per_account: 256,
            max_pending_per_socket: 64,
            max_pending_per_ip: 128,
            max_pending_bytes: 128 * 1024 * 1024,
            allow_replies_without_pok: false,
            pok_time_window: Duration::from_secs(10),
            key_file,
            accounts,
            account_cache_ttl: Duration::from_secs(60),
            metrics_listen: None,
            redis: None,
        }
    }
}

/// The TOML file form (every field optional; command-line flags override it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// `connected.server`.
    pub server_name: Option<String>,
    /// Request lifetime, seconds.
    pub timeout_secs: Option<u64>,
    /// Heartbeat, seconds.
    pub ping_rate_secs: Option<u64>,
    /// Largest frame, bytes.
    pub max_frame_bytes: Option<usize>,
    /// Concurrent sockets.
    pub max_connections: Option<usize>,
    /// Frames per second per socket.
    pub frames_per_second: Option<u32>,
    /// Pending requests per account.
    pub max_pending_per_account: Option<usize>,
    /// See [`RelayConfig::max_pending_per_socket`].
    pub max_pending_per_socket: Option<usize>,
    /// See [`RelayConfig::max_pending_per_ip`].
    pub max_pending_per_ip: Option<usize>,
    /// See [`RelayConfig::max_pending_bytes`].
    pub max_pending_bytes: Option<usize>,
    /// Accept 0.8 replies without pok.
    pub allow_replies_without_pok: Option<bool>,
    /// Server key file.
    pub key_file: Option<PathBuf>,
    /// Static accounts file.
    pub accounts_file: Option<PathBuf>,
    /// Hive API nodes.
    pub hive_api: Option<Vec<String>>,
    /// Metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster mode: the shared Redis URL.
    pub redis: Option<String>,
}
