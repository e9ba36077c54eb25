//! `pksa.toml`: parsed, validated, with errors naming the file, the field and the problem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use has_protocol::AuthReqSecret;
use hive_chain::ChainId;
use serde::Deserialize;

use crate::policy::PolicyConfig;

/// A configuration error: file, field, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The field (dotted path).
    pub field: String,
    /// The problem.
    pub message: String,
}

/// How the keystore passphrase is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// Ask on the terminal.
    Prompt,
    /// An environment variable.
    Env(String),
    /// A file (first line).
    File(PathBuf),
    /// A systemd credential (`$CREDENTIALS_DIRECTORY/<name>`).
    Credential(String),
}

impl PassphraseSource {
    fn parse(s: &str) -> Option<Self> {
        if s == "prompt" {
            return Some(PassphraseSource::Prompt);
        }
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "env" => Some(PassphraseSource::Env(rest.to_owned())),
            "file" => Some(PassphraseSource::File(PathBuf::from(rest))),
            "credential" => Some(PassphraseSource::Credential(rest.to_owned())),
            _ => None,
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An age-encrypted keystore.
    Keystore {
        /// Path.
        path: PathBuf,
        /// Passphrase source.
        passphrase: PassphraseSource,
    },
    /// A plaintext reference-format keys.json (must be mode 0600).
    PlainKeysJson(PathBuf),
}

/// Logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// JSON lines instead of human-readable.
    pub json: bool,
    /// Log encrypted payloads in full (off: redacted).
    pub payloads: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `register_req.app`.
    pub pksa_name: String,
    /// HAS servers (ws:// or wss://).
    pub has_servers: Vec<String>,
    /// Hive API nodes.
    pub hive_api: Vec<String>,
    /// Chain id.
    pub chain_id: ChainId,
    /// Keys.
    pub keys: KeySource,
    /// SQLite state file.
    pub state: PathBuf,
    /// Pre-shared secret for service-mode auth (None: only stored sessions authenticate).
    pub auth_req_secret: Option<AuthReqSecret>,
    /// Lifetime of a new session.
    pub session_lifetime: Duration,
    /// A session can be renewed by re-authentication up to this long after its creation.
    pub session_max_lifetime: Duration,
    /// Answer refused auth requests with auth_nack (else silence).
    pub auth_req_reject: bool,
    /// Answer refused sign requests with sign_nack (else silence).
    pub sign_req_reject: bool,
    /// Answer refused challenges with challenge_nack (else silence).
    pub challenge_req_reject: bool,
    /// Allow memo decryption challenges (policy can restrict further).
    pub challenge_decrypt: bool,
    /// Require a nonce on challenge_req (hive-auth-wrapper's challenge() sends none).
    pub challenge_nonce_required: bool,
    /// Transaction expiration after the head block time.
    pub expiration: Duration,
    /// Answers are kept for re-delivery this long after their request expired.
    pub answer_retention: Duration,
    /// Audit rows older than this are pruned (None: kept for ever).
    pub audit_retention: Option<Duration>,
    /// Logging.
    pub log: LogConfig,
    /// Metrics and health listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Policy.
    pub policy: PolicyConfig,
    /// Where the config was read from.
    pub source: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    pksa_name: Option<String>,
    has_servers: Option<Vec<String>>,
    hive_api: Option<Vec<String>>,
    chain_id: Option<String>,
    keystore: Option<PathBuf>,
    keystore_passphrase: Option<String>,
    keys_json: Option<PathBuf>,
    state: Option<PathBuf>,
    auth_req_secret: Option<String>,
    auth_req_secret_file: Option<PathBuf>,
    session_lifetime_days: Option<f64>,
    session_max_lifetime_days: Option<f64>,
    auth_req_reject: Option<bool>,
    sign_req_reject: Option<bool>,
    challenge_req_reject: Option<bool>,
    challenge_decrypt: Option<bool>,
    challenge_nonce_required: Option<bool>,
    expiration_secs: Option<u64>,
    answer_retention_hours: Option<f64>,
    audit_retention_days: Option<f64>,
    #[serde(default)]
    log: RawLog,
    metrics_listen: Option<String>,
    #[serde(default)]
    policy: PolicyConfig,
    policy_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    payloads: Option<bool>,
}

/// Where in the file an error is: line and column (from 1) and the table header above it.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    line: usize,
    column: usize,
    table: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if let Some(t) = &self.table {
            write!(f, " (in {t})")?;
        }
        Ok(())
    }
}

/// The keys of the top level (above every table), for the hint when one lands in a table.
const TOP_LEVEL_KEYS: &[&str] = &[
    "pksa_name",
    "has_servers",
    "hive_api",
    "chain_id",
    "keystore",
    "keystore_passphrase",
    "keys_json",
    "state",
    "auth_req_secret",
    "auth_req_secret_file",
    "session_lifetime_days",
    "session_max_lifetime_days",
    "auth_req_reject",
    "sign_req_reject",
    "challenge_req_reject",
    "challenge_decrypt",
    "challenge_nonce_required",
    "expiration_secs",
    "answer_retention_hours",
    "audit_retention_days",
    "metrics_listen",
    "policy_file",
];

fn locate(text: &str, offset: usize) -> Location {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The last table header (`[name]` or `[[name]]`) on a line of its own before the error.
    let earlier_lines = &before[..before.rfind('\n').map_or(0, |i| i + 1)];
    let table = earlier_lines
        .lines()
        .rev()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| {
            l.starts_with('[')
                && l.ends_with(']')
                && l.trim_matches(['[', ']'])
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        })
        .map(str::to_owned);
    Location {
        line,
        column,
        table,
    }
}

/// The key of serde's "unknown field `key`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

impl Config {
    /// Reads and validates a config file. Relative paths are relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |field: &str, message: String| ConfigError {
            file: file.clone(),
            field: field.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
        Config::parse(&text, path)
    }

    /// Validates config text that was read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |field: &str, message: String| ConfigError {
            file: file.clone(),
            field: field.to_owned(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let Some(span) = e.span() else {
                return err("(syntax)", e.message().to_owned());
            };
            let at = locate(text, span.start);
            let mut message = e.message().to_owned();
            // A top-level key written below a table header belongs to that table.
            if let (Some(table), Some(key)) = (&at.table, unknown_field(&message))
                && TOP_LEVEL_KEYS.contains(&key)
            {
                message = format!(
                    "`{key}` is inside `{table}`: top-level keys go above the first table ({message})"
                );
            }
            err(&at.to_string(), message)
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let pksa_name = raw.pksa_name.unwrap_or_else(|| "pksa-service".into());
        if pksa_name.is_empty() || pksa_name.len() > 64 {
            return Err(err("pksa_name", "must be 1 to 64 characters".into()));
        }
        let has_servers = raw.has_servers.ok_or_else(|| {
            err(
                "has_servers",
                "is required (a list of ws:// or wss:// URLs)".into(),
            )
        })?;
        if has_servers.is_empty() {
            return Err(err(
                "has_servers",
                "must list at least one HAS server".into(),
            ));
        }
        for (i, s) in has_servers.iter().enumerate() {
            if !(s.starts_with("ws://") || s.starts_with("wss://")) {
                return Err(err(
                    &format!("has_servers[{i}]"),
                    format!("{s:?} must start with ws:// or wss://"),
                ));
            }
        }
        let hive_api = raw.hive_api.unwrap_or_else(|| {
            vec![
                "https://api.hive.blog".into(),
                "https://api.deathwing.me".into(),
            ]
        });
        if hive_api.is_empty() {
            return Err(err(
                "hive_api",
                "must list at least one Hive API node".into(),
            ));
        }
        for (i, s) in hive_api.iter().enumerate() {
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                return Err(err(
                    &format!("hive_api[{i}]"),
                    format!("{s:?} must start with http:// or https://"),
                ));
            }
        }
        let chain_id =
            ChainId::from_name(raw.chain_id.as_deref().unwrap_or("mainnet")).map_err(|_| {
                err(
                    "chain_id",
                    "must be mainnet, testnet or 64 hex characters".into(),
                )
            })?;
        let keys = match (raw.keystore, raw.keys_json) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "keys_json",
                    "give either keystore or keys_json, not both".into(),
                ));
            }
            (Some(k), None) => {
                let src = raw.keystore_passphrase.as_deref().unwrap_or("prompt");
                let passphrase = PassphraseSource::parse(src).ok_or_else(|| {
                    err(
                        "keystore_passphrase",
                        format!("{src:?} must be prompt, env:VAR, file:PATH or credential:NAME"),
                    )
                })?;
                let passphrase = match passphrase {
                    PassphraseSource::File(p) => PassphraseSource::File(rel(p)),
                    other => other,
                };
                KeySource::Keystore {
                    path: rel(k),
                    passphrase,
                }
            }
            (None, Some(j)) => KeySource::PlainKeysJson(rel(j)),
            (None, None) => {
                return Err(err(
                    "keystore",
                    "is required (or keys_json for a plaintext reference keys.json)".into(),
                ));
            }
        };
        let state = rel(raw
            .state
            .unwrap_or_else(|| PathBuf::from("pksa-state.sqlite")));
        let auth_req_secret = match (raw.auth_req_secret, raw.auth_req_secret_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "auth_req_secret_file",
                    "give either auth_req_secret or auth_req_secret_file".into(),
                ));
            }
            (Some(s), None) => Some(s),
            (None, Some(f)) => {
                let p = rel(f);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err("auth_req_secret_file", format!("{}: {e}", p.display())))?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, None) => None,
        };
        if let Some(s) = &auth_req_secret
            && s.len() < 16
        {
            return Err(err(
                "auth_req_secret",
                "must be at least 16 characters (it is as sensitive as an API key)".into(),
            ));
        }
        let days = |field: &str, v: Option<f64>, default: f64| -> Result<Duration, ConfigError> {
            let d = v.unwrap_or(default);
            if !(d > 0.0 && d <= 3650.0) {
                return Err(err(
                    field,
                    "must be more than 0 and at most 3650 days".into(),
                ));
            }
            Ok(Duration::from_secs_f64(d * 86400.0))
        };
        let session_lifetime = days("session_lifetime_days", raw.session_lifetime_days, 7.0)?;
        let session_max_lifetime = days(
            "session_max_lifetime_days",
            raw.session_max_lifetime_days,
            90.0,
        )?;
        if session_max_lifetime < session_lifetime {
            return Err(err(
                "session_max_lifetime_days",
                "must not be shorter than session_lifetime_days".into(),
            ));
        }
        let expiration = raw.expiration_secs.unwrap_or(60);
        if !(10..=3600).contains(&expiration) {
            return Err(err("expiration_secs", "must be between 10 and 3600".into()));
        }
        let answer_retention = raw.answer_retention_hours.unwrap_or(24.0);
        if !(1.0..=24.0 * 366.0).contains(&answer_retention) {
            return Err(err(
                "answer_retention_hours",
                "must be at least 1 and at most a year (re-delivered requests are answered from it)".into(),
            ));
        }
        let audit_retention = match raw.audit_retention_days {
            None => None,
            Some(d) if (1.0..=3650.0).contains(&d) => Some(Duration::from_secs_f64(d * 86400.0)),
            Some(_) => {
                return Err(err(
                    "audit_retention_days",
                    "must be at least 1 and at most 3650 (leave it out to keep every row)".into(),
                ));
            }
        };
        let json = match raw.log.format.as_deref() {
            None | Some("human") => false,
            Some("json") => true,
            Some(other) => {
                return Err(err(
                    "log.format",
                    format!("{other:?} must be human or json"),
                ));
            }
        };
        let metrics_listen = raw
            .metrics_listen
            .map(|s| {
                s.parse().map_err(|_| {
                    err(
                        "metrics_listen",
                        format!("{s:?} is not an address like 127.0.0.1:9108"),
                    )
                })
            })
            .transpose()?;
        let policy = match raw.policy_file {
            Some(pf) => {
                if !raw.policy.rules.is_empty() {
                    return Err(err(
                        "policy_file",
                        "give rules either in [policy] or in policy_file, not both".into(),
                    ));
                }
                let p = rel(pf);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err("policy_file", format!("{}: {e}", p.display())))?;
                let pol: PolicyConfig = toml::from_str(&text)
                    .map_err(|e| err("policy_file", format!("{}: {}", p.display(), e.message())))?;
                pol.validate().map_err(|(field, message)| {
                    err(
                        "policy_file",
                        format!("{}: {field}: {message}", p.display()),
                    )
                })?;
                pol
            }
            None => {
                raw.policy
                    .validate()
                    .map_err(|(field, message)| err(&format!("policy.{field}"), message))?;
                raw.policy
            }
        };
        Ok(Config {
            pksa_name,
            has_servers,
            hive_api,
            chain_id,
            keys,
            state,
            auth_req_secret: auth_req_secret.map(AuthReqSecret::new),
            session_lifetime,
            session_max_lifetime,
            auth_req_reject: raw.auth_req_reject.unwrap_or(false),
            sign_req_reject: raw.sign_req_reject.unwrap_or(true),
            challenge_req_reject: raw.challenge_req_reject.unwrap_or(true),
            challenge_decrypt: raw.challenge_decrypt.unwrap_or(false),
            challenge_nonce_required: raw.challenge_nonce_required.unwrap_or(false),
            expiration: Duration::from_secs(expiration),
            answer_retention: Duration::from_secs_f64(answer_retention * 3600.0),
            audit_retention,
            log: LogConfig {
                json,
                payloads: raw.log.payloads.unwrap_or(false),
            },
            metrics_listen,
            policy,
            source: path.to_path_buf(),
        })
    }
}

/// The settings the request path reads: what a reload (SIGHUP) may change.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pre-shared secret.
    pub auth_req_secret: Option<AuthReqSecret>,
    /// New session lifetime.
    pub session_lifetime: Duration,
    /// Renewal cap after creation.
    pub session_max_lifetime: Duration,
    /// Refused auth requests get auth_nack (else silence).
    pub auth_req_reject: bool,
    /// Refused sign requests get sign_nack (else silence).
    pub sign_req_reject: bool,
    /// Refused challenges get challenge_nack (else silence).
    pub challenge_req_reject: bool,
    /// Memo decryption enabled.
    pub challenge_decrypt: bool,
    /// Nonce required on challenges.
    pub challenge_nonce_required: bool,
    /// Transaction expiration.
    pub expiration: Duration,
    /// Log payloads in full.
    pub log_payloads: bool,
    /// The policy.
    pub policy: PolicyConfig,
    /// Answers kept after their request expired.
    pub answer_retention: Duration,
    /// Audit rows kept (None: for ever).
    pub audit_retention: Option<Duration>,
}

impl Settings {
    /// From a validated config.
    pub fn from_config(c: &Config) -> Self {
        Settings {
            auth_req_secret: c.auth_req_secret.clone(),
            session_lifetime: c.session_lifetime,
            session_max_lifetime: c.session_max_lifetime,
            auth_req_reject: c.auth_req_reject,
            sign_req_reject: c.sign_req_reject,
            challenge_req_reject: c.challenge_req_reject,
            challenge_decrypt: c.challenge_decrypt,
            challenge_nonce_required: c.challenge_nonce_required,
            expiration: c.expiration,
            log_payloads: c.log.payloads,
            policy: c.policy.clone(),
            answer_retention: c.answer_retention,
            audit_retention: c.audit_retention,
        }
    }
}

/// The commented example `pksa-service init` writes.
/// [`EXAMPLE`] in the layout of `dist/pksa.service` (`init --system`): keystore and state in
/// `state_dir` (the unit's `StateDirectory=`), the passphrase from the systemd credential
/// [`SYSTEM_CREDENTIAL`], JSON logs for the journal.
pub fn system_example(state_dir: &Path) -> Result<String, String> {
    let dir = state_dir.to_str().filter(|d| {
        d.starts_with('/') && !d.chars().any(|c| matches!(c, '"' | '\\') || c.is_control())
    });
    let Some(dir) = dir.map(|d| d.trim_end_matches('/')) else {
        return Err(
            "--state-dir must be an absolute path without quotes, backslashes or control characters"
                .into(),
        );
    };
    let mut text = EXAMPLE.to_owned();
    for (from, to) in [
        (
            "keystore = \"keystore.age\"",
            format!("keystore = \"{dir}/keystore.age\""),
        ),
        (
            "keystore_passphrase = \"env:PKSA_PASSPHRASE\"",
            format!("keystore_passphrase = \"credential:{SYSTEM_CREDENTIAL}\""),
        ),
        (
            "# The quick start exports PKSA_PASSPHRASE.",
            "# LoadCredentialEncrypted= in the unit; at a terminal, the CLI asks for it.".into(),
        ),
        (
            "state = \"pksa-state.sqlite\"",
            format!("state = \"{dir}/pksa-state.sqlite\""),
        ),
        (
            "format = \"human\"   # or \"json\"",
            "format = \"json\"   # or \"human\"".into(),
        ),
    ] {
        if !text.contains(from) {
            return Err(format!("init --system: the template has no line {from:?}"));
        }
        text = text.replacen(from, &to, 1);
    }
    Ok(format!(
        "# Layout of dist/pksa.service (pksa-service init --system).\n{text}"
    ))
}

/// The systemd credential holding the keystore passphrase in `dist/pksa.service`.
pub const SYSTEM_CREDENTIAL: &str = "pksa-passphrase";

pub const EXAMPLE: &str = r#"# pksa-service configuration. Paths are relative to this file.

# Name announced to HAS servers in register_req.
pksa_name = "my-pksa"

# HAS servers to register on (all of them; a request arriving through several is answered once).
has_servers = ["wss://hive-auth.arcange.eu"]

# Hive API nodes, tried in order with failover.
hive_api = ["https://api.hive.blog", "https://api.deathwing.me"]

# mainnet, testnet, or 64 hex characters.
chain_id = "mainnet"

# Keys: an age-encrypted keystore (pksa-service keys add ...).
keystore = "keystore.age"
# env:VAR | file:PATH | credential:NAME (systemd LoadCredential=) | prompt (a terminal).
# The quick start exports PKSA_PASSPHRASE.
keystore_passphrase = "env:PKSA_PASSPHRASE"
# Or, discouraged, a plaintext reference-format keys.json (refused unless mode 0600):
# keys_json = "keys.json"

# State (sessions, nonces, answered requests, audit): SQLite.
state = "pksa-state.sqlite"

# Apps send their auth_key encrypted with this secret (service mode). As sensitive as an API key.
# auth_req_secret = "..."
# auth_req_secret_file = "auth_req_secret.txt"

# A new session lives this long; re-authentication renews it up to the maximum after creation.
session_lifetime_days = 7
session_max_lifetime_days = 90

# Refusals: answer with *_nack (true) or stay silent (false).
auth_req_reject = false
sign_req_reject = true
challenge_req_reject = true

# Memo decryption challenges (off by default).
challenge_decrypt = false
# Require a nonce on challenge_req (hive-auth-wrapper's challenge() sends none).
challenge_nonce_required = false

# Transaction expiration after the head block time, seconds (10..3600).
expiration_secs = 60

# Retention. Answers are kept this long after their request expired, to answer a request
# delivered again; audit rows older than audit_retention_days are pruned (the chain stays
# verifiable from the last pruned row). Leave audit_retention_days out to keep every row.
answer_retention_hours = 24
# audit_retention_days = 365

# metrics_listen = "127.0.0.1:9108"

[log]
format = "human"   # or "json"
payloads = false   # true logs encrypted payloads in full

# Policy: default deny for anything dangerous. Posting operations are approved, active ones
# only when a rule names them, owner authority never. Rules go below or in a separate file:
# policy_file = "policy.toml"   (the same [[rules]] tables at top level)
[policy]
# [[policy.rules]]
# id = "game-bot"
# apps = ["my-game*"]
# allowed_ops = ["custom_json", "transfer"]
# key_roles = ["posting", "active"]
# custom_json_ids = ["my-game-*"]
# transfer_to = ["my-game-bank"]
# max_transfer = ["10.000 HIVE"]
# spend_limits = [{ max = "100.000 HIVE", window_hours = 24 }]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("/etc/pksa/pksa.toml"))
    }

    #[test]
    fn errors_name_line_column_and_table() {
        let e = parse(
            "has_servers = [\"ws://x\"]\n[log]\nformat = \"json\"\npolicy_file = \"p.toml\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 4, column 1 (in [log])")
                && e.contains(
                    "`policy_file` is inside `[log]`: top-level keys go above the first table"
                ),
            "{e}"
        );
        let e = parse("has_servers = [\"ws://x\"\nkeystore = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("(in "), "{e}");
        let e =
            parse("has_servers = [\"ws://x\"]\n[log]\n[[policy.rules]]\nbogus = 1\nid = \"a\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("line 4, column 1 (in [[policy.rules]])")
                && e.contains("unknown field `bogus`"),
            "{e}"
        );
        let e = parse("has_servers = [\"ws://x\"]\nkeystore = 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, column 12:") && e.contains("expected path string"),
            "{e}"
        );
    }

    #[test]
    fn system_example_parses_with_the_unit_layout() {
        let c = parse(&system_example(Path::new("/var/lib/pksa/")).unwrap()).unwrap();
        assert_eq!(c.state, Path::new("/var/lib/pksa/pksa-state.sqlite"));
        assert_eq!(
            c.keys,
            KeySource::Keystore {
                path: "/var/lib/pksa/keystore.age".into(),
                passphrase: PassphraseSource::Credential(SYSTEM_CREDENTIAL.into())
            }
        );
        assert!(c.log.json);
        for bad in ["relative", "/var/lib/\"x", "/var/lib/a\\b", "/var/lib/a\nb"] {
            assert!(system_example(Path::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.pksa_name, "my-pksa");
        assert_eq!(c.state, PathBuf::from("/etc/pksa/pksa-state.sqlite"));
        // The quick start exports PKSA_PASSPHRASE.
        assert!(matches!(
            c.keys,
            KeySource::Keystore {
                passphrase: PassphraseSource::Env(ref v),
                ..
            } if v == "PKSA_PASSPHRASE"
        ));
    }

    #[test]
    fn errors_name_file_field_and_problem() {
        let e = parse("has_servers = []\nkeystore = \"k\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/pksa/pksa.toml: has_servers: must list at least one HAS server"
        );
        let e = parse("has_servers = [\"http://x\"]\nkeystore = \"k\"").unwrap_err();
        assert_eq!(e.field, "has_servers[0]");
        let e =
            parse("has_servers = [\"ws://x\"]\nkeystore = \"k\"\nchain_id = \"nope\"").unwrap_err();
        assert_eq!(e.field, "chain_id");
        let e = parse("has_servers = [\"ws://x\"]\nkeystore = \"k\"\nbogus = 1").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e =
            parse("has_servers = [\"ws://x\"]\nkeystore = \"k\"\nkeystore_passphrase = \"stdin\"")
                .unwrap_err();
        assert_eq!(e.field, "keystore_passphrase");
        let e = parse("has_servers = [\"ws://x\"]\nkeystore = \"k\"\nauth_req_secret = \"short\"")
            .unwrap_err();
        assert_eq!(e.field, "auth_req_secret");
    }
}
