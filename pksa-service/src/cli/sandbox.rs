//! The zero-config sandbox: `cargo run -p pksa-service` starts, on loopback, an embedded
//! has-relay, a dry-run Hive node, and the service with a freshly generated account; it
//! prints what an app developer needs and keeps an enrollment window open for ten minutes.
//! `--demo` also drives has-client through every flow and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use has_client::{AuthMode, HasClient, SignResult};
use has_crypto::{KeyRole, PrivateKey};
use has_protocol::payloads::{AppInfo, ChallengeSpec};
use has_protocol::{AuthReqSecret, KeyType, UnixMillis};
use hive_chain::ChainId;
use hive_chain::accounts::Account;
use hive_chain::dryrun::{self, DryRunNode};
use serde_json::json;
use tokio::sync::watch;

use crate::config::Settings;
use crate::daemon::{self, Service};
use crate::keystore::KeyStore;
use crate::policy::{PolicyConfig, Rule};
use crate::state::{self, Sealer, Store, enrollments, now_ms};

/// Sandbox options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Relay port (0 = any free port).
    pub port: u16,
    /// Dry-run node port (0 = any free port).
    pub hive_port: u16,
    /// Where to keep the state (default: a temporary directory removed at exit).
    pub dir: Option<PathBuf>,
    /// Metrics/health listener.
    pub metrics: Option<SocketAddr>,
    /// Use this account name instead of a random one.
    pub account: Option<String>,
    /// Use this password (login-derived keys) instead of a random one.
    pub password: Option<String>,
    /// Register on this external relay instead of starting one (it must know the account).
    pub relay: Option<String>,
    /// Use this auth_req_secret instead of a random one (apps keep theirs across restarts).
    pub secret: Option<String>,
}

/// The sandbox's policy: the built-in default (posting operations, posting and memo
/// challenges), and sign requests without a nonce accepted from every app, so app libraries
/// that send none (hive-auth-client) work as they are. A real deployment refuses them unless
/// a rule says `sign_without_nonce = true` for that app; the banner says so.
pub fn sandbox_policy() -> PolicyConfig {
    PolicyConfig {
        rules: vec![Rule {
            id: "sandbox".into(),
            sign_without_nonce: true,
            // As the built-in default: no value to other accounts (comment beneficiaries).
            transfer_to: Some(vec![]),
            ..Rule::default()
        }],
    }
}

/// A running sandbox.
pub struct Sandbox {
    /// Relay URL (`ws://127.0.0.1:port`).
    pub relay_url: String,
    /// Dry-run node URL.
    pub hive_api_url: String,
    /// The generated account.
    pub account: String,
    /// Its password (login-derived keys, as dhive's `PrivateKey.fromLogin`).
    pub password: String,
    /// The auth_req_secret apps use.
    pub secret: AuthReqSecret,
    /// The dry-run node (its record of transactions).
    pub node: Arc<DryRunNode>,
    /// The service state.
    pub service: Arc<Service>,
    /// Public keys by role.
    pub public_keys: Vec<(String, String)>,
    /// Where the state is kept (a temporary directory, removed at exit, unless `--dir`).
    pub dir: PathBuf,
    relay: Option<has_relay::RelayHandle>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("relay_url", &self.relay_url)
            .field("account", &self.account)
            .finish()
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    b.iter().map(|x| char::from(b'a' + x % 26)).collect()
}

/// Starts the sandbox. Everything is ready when this returns (registered on the relay).
pub async fn start(opts: Options) -> anyhow::Result<Sandbox> {
    let (tmp, dir) = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("pksa-sandbox-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let account = opts
        .account
        .clone()
        .unwrap_or_else(|| format!("sandbox-{}", random_suffix()));
    has_protocol::AccountName::new(&account).map_err(anyhow::Error::msg)?;
    let password = opts
        .password
        .clone()
        .unwrap_or_else(|| format!("P{}", uuid::Uuid::new_v4().simple()));
    let keys: Vec<PrivateKey> = KeyRole::ALL
        .iter()
        .map(|r| PrivateKey::from_login(&account, &password, *r))
        .collect::<Result<_, _>>()?;
    let [memo, posting, active, owner] =
        <[PrivateKey; 4]>::try_from(keys).map_err(|_| anyhow::anyhow!("key derivation"))?;
    let chain_account = Account::with_keys(
        &account,
        *owner.public_key(),
        *active.public_key(),
        *posting.public_key(),
        *memo.public_key(),
    );

    // Dry-run Hive node.
    let node = DryRunNode::new(ChainId::MAINNET, vec![chain_account.clone()]);
    let (hive_api_url, _node_task) = dryrun::spawn(node.clone(), opts.hive_port).await?;

    // Relay with a static accounts file.
    let accounts_file = dir.join("sandbox-accounts.json");
    std::fs::write(&accounts_file, serde_json::to_string(&[&chain_account])?)?;
    let mut relay_config = has_relay::RelayConfig::new(
        dir.join("relay.key"),
        has_relay::AccountSource::File(accounts_file),
    );
    // Loopback development: no per-socket rate limit worth the name, room for load tests.
    relay_config.frames_per_second = 1_000_000;
    relay_config.max_pending_per_account = 100_000;
    relay_config.max_pending_per_socket = 100_000;
    relay_config.max_pending_per_ip = 100_000;
    let (relay, relay_url) = match &opts.relay {
        Some(url) => (None, url.clone()),
        None => {
            let r = has_relay::spawn(SocketAddr::from(([127, 0, 0, 1], opts.port)), relay_config)
                .await?;
            let url = r.url.clone();
            (Some(r), url)
        }
    };

    // The service.
    let mut ks = KeyStore::new();
    ks.add(&account, KeyRole::Memo, memo.clone())
        .map_err(anyhow::Error::msg)?;
    ks.add(&account, KeyRole::Posting, posting.clone())
        .map_err(anyhow::Error::msg)?;
    ks.add(&account, KeyRole::Active, active.clone())
        .map_err(anyhow::Error::msg)?;
    // A kept state directory keeps its state key too, so its sessions survive a restart.
    if opts.dir.is_some() {
        ks.use_state_key_file(&dir.join("sandbox.statekey"))
            .map_err(anyhow::Error::msg)?;
    }
    let store = Store::open(
        &dir.join("pksa-state.sqlite"),
        Sealer::new(ks.state_key().clone()),
        state::Sync::Normal,
    )?;
    let acct = account.clone();
    store
        .call(move |c| enrollments::open(c, &acct, None, now_ms() + 10 * 60 * 1000, None))
        .await?;
    let secret = match &opts.secret {
        Some(s) if s.len() >= 16 => AuthReqSecret::new(s.clone()),
        Some(_) => anyhow::bail!("--secret: at least 16 characters"),
        None => AuthReqSecret::generate(),
    };
    let settings = Settings {
        auth_req_secret: Some(secret.clone()),
        session_lifetime: Duration::from_secs(86400),
        session_max_lifetime: Duration::from_secs(7 * 86400),
        auth_req_reject: true,
        sign_req_reject: true,
        challenge_req_reject: true,
        challenge_decrypt: false,
        challenge_nonce_required: false,
        expiration: Duration::from_secs(60),
        log_payloads: false,
        answer_retention: Duration::from_secs(86_400),
        audit_retention: None,
        policy: sandbox_policy(),
    };
    let rpc = daemon::rpc_client(vec![hive_api_url.clone()])?;
    let svc = Service::new(
        "pksa-sandbox".into(),
        ks,
        store,
        rpc,
        ChainId::MAINNET,
        settings,
        std::slice::from_ref(&relay_url),
    );
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(svc.clone(), opts.metrics, stop_rx));
    // Ready = registered on the relay.
    let status = svc
        .servers
        .first()
        .map(|(_, s)| s.clone())
        .ok_or_else(|| anyhow::anyhow!("no server"))?;
    let ready = async {
        while status.registered.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .map_err(|_| anyhow::anyhow!("the service did not register on the sandbox relay"))?;
    let public_keys = [
        ("owner", &owner),
        ("active", &active),
        ("posting", &posting),
        ("memo", &memo),
    ]
    .iter()
    .map(|(r, k)| (r.to_string(), k.public_key().to_string()))
    .collect();
    Ok(Sandbox {
        relay_url,
        hive_api_url,
        account,
        password,
        secret,
        node,
        service: svc,
        public_keys,
        dir: dir.clone(),
        relay,
        stop,
        task,
        _tmp: tmp,
    })
}

impl Sandbox {
    /// The one-line JSON description (for scripts and CI).
    pub fn info_json(&self) -> serde_json::Value {
        let keys: serde_json::Map<String, serde_json::Value> = self
            .public_keys
            .iter()
            .map(|(r, k)| (r.clone(), json!(k)))
            .collect();
        json!({
            "relay_url": self.relay_url,
            "hive_api_url": self.hive_api_url,
            "account": self.account,
            "password": self.password,
            "auth_req_secret": self.secret.expose_secret(),
            "public_keys": keys,
            "dir": self.dir,
        })
    }

    /// The human-readable banner.
    pub fn banner(&self) -> String {
        let keys: Vec<String> = self
            .public_keys
            .iter()
            .map(|(r, k)| format!("    {r:<8} {k}"))
            .collect();
        format!(
            "pksa-service sandbox (loopback only; the Hive node is a dry run: nothing reaches a real chain)\n\
             \n  relay            {}\n  hive api         {} (dry run)\n  account          {}\n  password         {}\n  auth_req_secret  {}\n  public keys\n{}\n\
             \n  An enrollment window is open for 10 minutes: authenticate an app now, e.g.\n\
             \n    cargo run -p has-client -- --server {} --session /tmp/sandbox-session.json auth --account {} --secret='{}'\n\
             \n  then sign or challenge with the saved session:\n\
             \n    cargo run -p has-client -- --server {} --session /tmp/sandbox-session.json challenge --text hello\n\
             \n  A JS app (hive-auth-wrapper; Aioha's HiveAuth provider through its bundled copy):\n\
             \n    HAS.setOptions({{ host: \"{}\", auth_key_secret: \"{}\" }})\n\
             \n  Policy: the default (posting operations; posting and memo challenges), and sign\n\
             \n  requests without a nonce from any app (a real deployment needs a rule saying\n\
             \n  sign_without_nonce = true for such an app). --secret keeps the secret across restarts.\n\
             \n  Ctrl-C stops the sandbox.\n",
            self.relay_url,
            self.hive_api_url,
            self.account,
            self.password,
            self.secret.expose_secret(),
            keys.join("\n"),
            self.relay_url,
            self.account,
            self.secret.expose_secret(),
            self.relay_url,
            self.relay_url,
            self.secret.expose_secret()
        )
    }

    /// Stops everything.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let r = (&mut self.task).await;
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await?;
        }
        r?
    }

    /// Drives has-client through every flow, printing each step. Errors on any failure.
    pub async fn demo(&self) -> anyhow::Result<()> {
        let rpc = daemon::rpc_client(vec![self.hive_api_url.clone()])?;
        let client = HasClient::connect(&self.relay_url).await?.with_chain(rpc);
        let app = AppInfo {
            name: "sandbox-demo".into(),
            description: Some("pksa-service --demo".into()),
            icon: None,
            pubkey: None,
        };
        let step = |n: u32, what: &str| println!("[{n}] {what}");

        step(
            1,
            "authenticate with the auth_req_secret and a login challenge",
        );
        let challenge = format!("login:{}:{}", self.account, UnixMillis::now());
        let session = client
            .authenticate(
                &self.account,
                app,
                Some(ChallengeSpec {
                    key_type: KeyType::Posting,
                    challenge: challenge.clone(),
                }),
                AuthMode::ServiceSecret(self.secret.clone()),
            )
            .await?;
        println!(
            "    session expires at {} (ms); challenge signed by {}",
            session.expire,
            session.pubkey.as_deref().unwrap_or("?")
        );

        step(2, "challenge: sign a text with the posting key");
        let c = client
            .challenge(&session, KeyType::Posting, "hello from the demo", false)
            .await?;
        println!(
            "    signature {}… verified against {}",
            &c.challenge[..16.min(c.challenge.len())],
            c.pubkey
        );

        let vote = |permlink: &str| json!(["vote", {"voter": self.account, "author": "hiveio", "permlink": permlink, "weight": 10000}]);
        step(
            3,
            "sign and broadcast a vote (posting authority, approved by the default policy)",
        );
        match client
            .sign(
                &session,
                vec![vote("demo-broadcast")],
                KeyType::Posting,
                true,
            )
            .await?
        {
            SignResult::Broadcast { tx_id, .. } => println!("    broadcast (dry run): tx {tx_id}"),
            other => anyhow::bail!("expected a broadcast, got {other:?}"),
        }
        let recorded = self.node.recorded().len();
        if recorded != 1 {
            anyhow::bail!("the dry-run node recorded {recorded} transactions, expected 1");
        }

        step(
            4,
            "sign only (the signed transaction comes back, verified against the account's posting authority)",
        );
        match client
            .sign(
                &session,
                vec![vote("demo-sign-only")],
                KeyType::Posting,
                false,
            )
            .await?
        {
            SignResult::Signed {
                transaction,
                signers,
                ..
            } => {
                println!(
                    "    signed by {} key(s), expiration {}",
                    signers.len(),
                    transaction.expiration
                )
            }
            other => anyhow::bail!("expected a signed transaction, got {other:?}"),
        }

        step(
            5,
            "a transfer (active authority): denied by the default policy",
        );
        let transfer = json!(["transfer", {"from": self.account, "to": "hiveio", "amount": "1.000 HIVE", "memo": "demo"}]);
        match client
            .sign(&session, vec![transfer], KeyType::Active, true)
            .await
        {
            Err(has_client::ClientError::Refused { .. }) => {
                println!("    refused (sign_nack), as the policy says")
            }
            other => anyhow::bail!("expected a refusal, got {other:?}"),
        }

        step(6, "a replayed nonce: refused");
        let old = UnixMillis(session.last_nonce().0.saturating_sub(1));
        match client
            .sign_with_nonce(
                &session,
                vec![vote("demo-replay")],
                KeyType::Posting,
                true,
                old,
            )
            .await
        {
            Err(has_client::ClientError::Failed { message, .. })
                if message.contains("already used") =>
            {
                println!("    refused: {message}")
            }
            other => anyhow::bail!("expected a replay refusal, got {other:?}"),
        }
        if self.node.recorded().len() != 1 {
            anyhow::bail!("a refused request reached the node");
        }
        println!("demo: all steps passed");
        Ok(())
    }
}
