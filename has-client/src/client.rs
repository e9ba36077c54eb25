//! The connection and the request/answer correlation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use has_crypto::{PublicKey, Signature};
use has_protocol::auth_payload::AuthPayload;
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{
    AccountName, AppToRelay, AuthKey, AuthReqSecret, Encrypted, KeyType, RelayToApp, RequestId,
    UnixMillis, frame,
};
use hive_chain::rpc::RpcClient;
use hive_chain::{Operation, SignedTransaction};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::error::ClientError;
use crate::session::Session;

/// How long the server has to acknowledge a request with `*_wait`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace after a request's expiry before giving up on an answer.
const EXPIRY_GRACE: Duration = Duration::from_secs(2);

/// How the PKSA learns the auth_key.
pub enum AuthMode {
    /// Service mode: the auth_key travels encrypted with the pre-shared auth_req_secret.
    ServiceSecret(AuthReqSecret),
    /// Interactive PKSA: the callback shows the QR code / deep link payload.
    Interactive(Box<dyn FnOnce(&AuthPayload) + Send>),
    /// Re-authenticate with a key the PKSA already knows (stored or pre-provisioned).
    ExistingKey(AuthKey),
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::ServiceSecret(_) => "AuthMode::ServiceSecret(<redacted>)",
            AuthMode::Interactive(_) => "AuthMode::Interactive",
            AuthMode::ExistingKey(_) => "AuthMode::ExistingKey(<redacted>)",
        })
    }
}

/// A verified `sign_ack`.
#[derive(Debug, Clone, PartialEq)]
pub enum SignResult {
    /// Broadcast: the transaction id.
    Broadcast {
        /// Request id.
        uuid: RequestId,
        /// Transaction id (40 hex).
        tx_id: String,
    },
    /// Sign-only: the signed transaction and who signed it.
    Signed {
        /// Request id.
        uuid: RequestId,
        /// The transaction (operations checked equal to the request).
        transaction: Box<SignedTransaction>,
        /// Public keys recovered from the signatures.
        signers: Vec<PublicKey>,
    },
}

/// A verified `challenge_ack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeResult {
    /// Request id.
    pub uuid: RequestId,
    /// The key that signed (or decrypted).
    pub pubkey: String,
    /// The signature (130 hex) or `#` + decrypted text.
    pub challenge: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Auth,
    Sign,
    Challenge,
}

type WaitAnswer = Result<Wait, ClientError>;

struct Pending {
    kind: Kind,
    account: AccountName,
    wait: oneshot::Sender<WaitAnswer>,
    reply: oneshot::Sender<RelayToApp>,
}

#[derive(Default)]
struct Shared {
    waiting: VecDeque<Pending>,
    replies: HashMap<RequestId, oneshot::Sender<RelayToApp>>,
    attaches: HashMap<RequestId, oneshot::Sender<bool>>,
    closed: Option<String>,
    /// The uuid of the newest request the relay acknowledged (`*_wait`).
    last_wait: Option<RequestId>,
}

/// A connection to a HAS server.
pub struct HasClient {
    url: String,
    out: mpsc::UnboundedSender<String>,
    shared: Arc<Mutex<Shared>>,
    /// Request lifetime the server announced.
    pub timeout: Duration,
    /// The protocol the server announced.
    pub protocol: f64,
    chain: Option<Arc<RpcClient>>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HasClient")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl Drop for HasClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl HasClient {
    /// Connects, reads `connected`, checks the protocol (0.8 and 1 are accepted).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let (mut sink, mut source) = ws.split();
        // The first text frame must be `connected`.
        let connected = tokio::time::timeout(WAIT_TIMEOUT, async {
            while let Some(msg) = source.next().await {
                if let Ok(Message::Text(t)) = msg
                    && let Ok(RelayToApp::Connected(c)) = frame::parse::<RelayToApp>(t.as_str())
                {
                    return Some(c);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ClientError::Connection("no connected message from the server".into()))?;
        let protocol = connected.protocol.map(|p| p.0).unwrap_or(0.0);
        if protocol > 1.0 {
            return Err(ClientError::Protocol(protocol));
        }
        let timeout = Duration::from_secs(connected.timeout.map(|t| t.0).unwrap_or(60).max(1));

        let shared = Arc::new(Mutex::new(Shared::default()));
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = source.next() => match msg {
                        Some(Ok(Message::Text(t))) => dispatch(&reader_shared, t.as_str()),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                    text = out_rx.recv() => match text {
                        Some(t) => if sink.send(Message::Text(t.into())).await.is_err() { break },
                        None => break,
                    },
                }
            }
            let mut st = lock(&reader_shared);
            st.closed = Some("the connection closed".into());
            for p in st.waiting.drain(..) {
                let _ = p
                    .wait
                    .send(Err(ClientError::Connection("the connection closed".into())));
            }
            st.replies.clear();
            st.attaches.clear();
        });
        Ok(HasClient {
            url: url.to_owned(),
            out,
            shared,
            timeout,
            protocol,
            chain: None,
            reader,
        })
    }

    /// Verifies sign-only transactions against the accounts' on-chain authorities too.
    pub fn with_chain(mut self, chain: Arc<RpcClient>) -> Self {
        self.chain = Some(chain);
        self
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The uuid of the newest request the relay acknowledged with a `*_wait`, if any: what
    /// [`HasClient::attach`] takes to wait for its answer again (for instance after giving up
    /// waiting on it).
    pub fn last_request(&self) -> Option<String> {
        lock(&self.shared)
            .last_wait
            .as_ref()
            .map(ToString::to_string)
    }

    /// Whether the socket is still open.
    pub fn is_open(&self) -> bool {
        lock(&self.shared).closed.is_none()
    }

    async fn send_text(&self, text: String) -> Result<(), ClientError> {
        self.out
            .send(text)
            .map_err(|_| ClientError::Connection("the connection closed".into()))
    }

    /// Builds, queues and sends a request, then waits for its `*_wait`; returns it and the
    /// reply slot. Building (which draws the nonce), queueing the correlation entry and
    /// handing the frame to the socket happen under one lock, so concurrent requests leave
    /// in nonce order and their `*_wait`s are matched to the right callers.
    ///
    /// A request the relay dropped for its rate limit is sent again, the very same frame
    /// (same ciphertext, same nonce: if it was processed after all, the PKSA answers the
    /// copy with the answer it gave, never with a second signature), after a pause that
    /// doubles each time (25 ms up to 1 s), for as long as a `*_wait` would have been
    /// awaited. The third value says whether it was sent again.
    async fn request(
        &self,
        kind: Kind,
        account: &AccountName,
        build: &mut impl FnMut() -> Result<String, ClientError>,
    ) -> Result<(Wait, oneshot::Receiver<RelayToApp>, bool), ClientError> {
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let mut pause = Duration::from_millis(25);
        let mut frame: Option<String> = None;
        let mut text = || -> Result<String, ClientError> {
            if let Some(f) = &frame {
                return Ok(f.clone());
            }
            let f = build()?;
            frame = Some(f.clone());
            Ok(f)
        };
        let mut resent = false;
        loop {
            match self.request_once(kind, account, &mut text).await {
                Err(ClientError::Server(e))
                    if e.starts_with(RATE_LIMITED)
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, ?pause, "rate-limited by the relay: sending again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    resent = true;
                }
                other => return other.map(|(w, r)| (w, r, resent)),
            }
        }
    }

    /// A request and its answer. When the frame had to be sent again (rate limit) and the
    /// copy is refused for its nonce, the first one was never decided (a decided one is
    /// answered with its stored answer): the request is built again with a fresh nonce,
    /// and sent. The nonce went stale because later requests of the same session got
    /// through first.
    async fn exchange(
        &self,
        kind: Kind,
        account: &AccountName,
        key: &AuthKey,
        mut build: impl FnMut() -> Result<String, ClientError>,
    ) -> Result<(Wait, RelayToApp), ClientError> {
        // Each fresh build is safe (see above); a bound keeps a relay that rate-limits
        // everything from keeping the caller forever.
        let mut again = 20;
        loop {
            let (wait, reply, resent) = self.request(kind, account, &mut build).await?;
            let answer = self.answer(&wait, reply).await?;
            let stale = match &answer {
                RelayToApp::SignErr(e) | RelayToApp::ChallengeErr(e) => {
                    e.message(key) == has_protocol::payloads::NONCE_ALREADY_USED
                }
                _ => false,
            };
            if resent && stale && again > 0 {
                again -= 1;
                continue;
            }
            return Ok((wait, answer));
        }
    }

    async fn request_once(
        &self,
        kind: Kind,
        account: &AccountName,
        build: &mut impl FnMut() -> Result<String, ClientError>,
    ) -> Result<(Wait, oneshot::Receiver<RelayToApp>), ClientError> {
        let (wait_tx, wait_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut st = lock(&self.shared);
            if let Some(why) = &st.closed {
                return Err(ClientError::Connection(why.clone()));
            }
            let text = build()?;
            st.waiting.push_back(Pending {
                kind,
                account: account.clone(),
                wait: wait_tx,
                reply: reply_tx,
            });
            if self.out.send(text).is_err() {
                st.waiting.pop_back();
                return Err(ClientError::Connection("the connection closed".into()));
            }
        }
        match tokio::time::timeout(WAIT_TIMEOUT, wait_rx).await {
            Ok(Ok(Ok(w))) => Ok((w, reply_rx)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ClientError::Connection("the connection closed".into())),
            Err(_) => Err(ClientError::NoWait),
        }
    }

    async fn answer(
        &self,
        wait: &Wait,
        reply: oneshot::Receiver<RelayToApp>,
    ) -> Result<RelayToApp, ClientError> {
        let left =
            Duration::from_millis(wait.expire.0.saturating_sub(UnixMillis::now().0)) + EXPIRY_GRACE;
        match tokio::time::timeout(left, reply).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ClientError::Connection(format!(
                "the connection closed while waiting for {}",
                wait.uuid
            ))),
            Err(_) => {
                lock(&self.shared).replies.remove(&wait.uuid);
                Err(ClientError::Expired(wait.uuid.clone()))
            }
        }
    }

    /// Authenticates `account` with a fresh auth_key (or an existing one), optionally asking
    /// the PKSA to sign a challenge. The challenge signature is verified.
    pub async fn authenticate(
        &self,
        account: &str,
        app: AppInfo,
        challenge: Option<ChallengeSpec>,
        mode: AuthMode,
    ) -> Result<Session, ClientError> {
        let account = AccountName::new(account).map_err(ClientError::Input)?;
        let (auth_key, secret, show) = match mode {
            AuthMode::ServiceSecret(s) => (AuthKey::generate(), Some(s), None),
            AuthMode::Interactive(cb) => (AuthKey::generate(), None, Some(cb)),
            AuthMode::ExistingKey(k) => (k, None, None),
        };
        let data = AuthReqData {
            app,
            challenge: challenge.clone(),
            token: None,
        };
        let req = AppToRelay::AuthReq(AuthReq {
            account: account.clone(),
            data: Encrypted::encrypt(&data, &auth_key),
            auth_key: secret.as_ref().map(|s| Encrypted::encrypt(&auth_key, s)),
            token: None,
        });
        let text = frame::encode(&req).map_err(|e| ClientError::Input(e.to_string()))?;
        let (wait, reply, _) = self
            .request(Kind::Auth, &account, &mut || Ok(text.clone()))
            .await?;
        if let Some(cb) = show {
            cb(&AuthPayload {
                account: account.clone(),
                uuid: wait.uuid.clone(),
                key: auth_key.clone(),
                host: self.url.clone(),
            });
        }
        let uuid = wait.uuid.clone();
        match self.answer(&wait, reply).await? {
            RelayToApp::AuthAck(a) => {
                let d = a
                    .data
                    .decrypt(&auth_key)
                    .map_err(|e| ClientError::InvalidAnswer {
                        uuid: uuid.clone(),
                        reason: e.to_string(),
                    })?;
                let pubkey = match (&challenge, &d.challenge) {
                    (Some(spec), Some(AuthChallengeAnswer::Signed(c))) => {
                        verify_signature(&uuid, &c.pubkey, &c.challenge, &spec.challenge)?;
                        Some(c.pubkey.clone())
                    }
                    (Some(_), _) => {
                        return Err(ClientError::InvalidAnswer {
                            uuid,
                            reason: "the requested challenge was not signed".into(),
                        });
                    }
                    (None, _) => None,
                };
                Ok(Session::new(account, auth_key, d.expire, d.token, pubkey))
            }
            other => Err(refusal(other, &auth_key, &uuid)),
        }
    }

    /// Asks the PKSA to sign (and broadcast) operations. A sign-only result is verified.
    pub async fn sign(
        &self,
        session: &Session,
        ops: Vec<serde_json::Value>,
        key_type: KeyType,
        broadcast: bool,
    ) -> Result<SignResult, ClientError> {
        self.sign_inner(session, ops, key_type, broadcast, None)
            .await
    }

    /// [`HasClient::sign`] with an explicit nonce (tests and demos of replay protection).
    pub async fn sign_with_nonce(
        &self,
        session: &Session,
        ops: Vec<serde_json::Value>,
        key_type: KeyType,
        broadcast: bool,
        nonce: UnixMillis,
    ) -> Result<SignResult, ClientError> {
        self.sign_inner(session, ops, key_type, broadcast, Some(nonce))
            .await
    }

    async fn sign_inner(
        &self,
        session: &Session,
        ops: Vec<serde_json::Value>,
        key_type: KeyType,
        broadcast: bool,
        nonce: Option<UnixMillis>,
    ) -> Result<SignResult, ClientError> {
        let parsed_ops =
            Operation::list_from_json(&ops).map_err(|e| ClientError::Input(e.to_string()))?;
        let build = || {
            let data = SignReqData {
                key_type,
                ops: ops.clone(),
                broadcast,
                nonce: Some(nonce.unwrap_or_else(|| session.next_nonce()).into()),
            };
            let req = AppToRelay::SignReq(SignReq {
                account: session.account.clone(),
                data: Encrypted::encrypt(&data, &session.auth_key),
                token: session.token.clone(),
            });
            frame::encode(&req).map_err(|e| ClientError::Input(e.to_string()))
        };
        let (wait, answer) = self
            .exchange(Kind::Sign, &session.account, &session.auth_key, build)
            .await?;
        let uuid = wait.uuid.clone();
        let bad = |reason: String| ClientError::InvalidAnswer {
            uuid: uuid.clone(),
            reason,
        };
        match answer {
            RelayToApp::SignAck(a) => match (broadcast, a.data) {
                (true, SignAckData::TxId(id)) => {
                    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(format!("{id:?} is not a transaction id")));
                    }
                    Ok(SignResult::Broadcast { uuid, tx_id: id })
                }
                (false, SignAckData::Transaction(obj)) => {
                    let tx: SignedTransaction =
                        serde_json::from_value(serde_json::Value::Object(obj))
                            .map_err(|e| bad(e.to_string()))?;
                    if tx.operations != parsed_ops {
                        return Err(bad("the signed operations differ from the request".into()));
                    }
                    // The signatures are recovered against our chain id (mainnet unless the
                    // chain client says otherwise) and must satisfy the required authorities.
                    let signers = self.verify_signed(&tx).await.map_err(bad)?;
                    Ok(SignResult::Signed {
                        uuid,
                        transaction: Box::new(tx),
                        signers,
                    })
                }
                (b, d) => Err(bad(format!("broadcast={b} but data is {d:?}"))),
            },
            other => Err(refusal(other, &session.auth_key, &uuid)),
        }
    }

    async fn verify_signed(&self, tx: &SignedTransaction) -> Result<Vec<PublicKey>, String> {
        if tx.signatures.is_empty() {
            return Err("no signature".into());
        }
        let chain = hive_chain::ChainId::MAINNET;
        let signers = tx.signers(&chain).map_err(|e| e.to_string())?;
        if let Some(rpc) = &self.chain {
            let required = tx.transaction().required();
            let names: Vec<String> = required.accounts.iter().map(|(a, _)| a.clone()).collect();
            let accounts = rpc.get_accounts(&names).await.map_err(|e| e.to_string())?;
            let map: hive_chain::accounts::AccountMap =
                accounts.into_iter().map(|a| (a.name.clone(), a)).collect();
            let set: std::collections::HashSet<PublicKey> = signers.iter().copied().collect();
            for (name, level) in &required.accounts {
                let acct = map
                    .get(name)
                    .ok_or_else(|| format!("account {name} not found"))?;
                if !hive_chain::accounts::has_authority(acct, *level, &set, &map) {
                    return Err(format!(
                        "the signatures do not satisfy {name}'s {level} authority"
                    ));
                }
            }
        }
        Ok(signers)
    }

    /// Asks the PKSA to sign `challenge` with the key of `key_type` (or, with `decrypt`, to
    /// decrypt the memo `challenge`). A signature is verified against the returned key.
    pub async fn challenge(
        &self,
        session: &Session,
        key_type: KeyType,
        challenge: &str,
        decrypt: bool,
    ) -> Result<ChallengeResult, ClientError> {
        let build = || {
            let data = ChallengeReqData {
                key_type,
                challenge: challenge.to_owned(),
                decrypt: Some(decrypt),
                nonce: Some(session.next_nonce().into()),
            };
            let req = AppToRelay::ChallengeReq(ChallengeReq {
                account: session.account.clone(),
                data: Encrypted::encrypt(&data, &session.auth_key),
                token: session.token.clone(),
            });
            frame::encode(&req).map_err(|e| ClientError::Input(e.to_string()))
        };
        let (wait, answer) = self
            .exchange(Kind::Challenge, &session.account, &session.auth_key, build)
            .await?;
        let uuid = wait.uuid.clone();
        match answer {
            RelayToApp::ChallengeAck(a) => {
                let d =
                    a.data
                        .decrypt(&session.auth_key)
                        .map_err(|e| ClientError::InvalidAnswer {
                            uuid: uuid.clone(),
                            reason: e.to_string(),
                        })?;
                if decrypt {
                    if !d.challenge.starts_with('#') {
                        return Err(ClientError::InvalidAnswer {
                            uuid,
                            reason: "a decrypted memo starts with #".into(),
                        });
                    }
                } else {
                    verify_signature(&uuid, &d.pubkey, &d.challenge, challenge)?;
                }
                Ok(ChallengeResult {
                    uuid,
                    pubkey: d.pubkey,
                    challenge: d.challenge,
                })
            }
            other => Err(refusal(other, &session.auth_key, &uuid)),
        }
    }

    /// Re-binds a pending request to this socket (after a reconnect) and returns its answer:
    /// `Ok(Some(frame))` when the request is known (the answer, possibly still to come),
    /// `Ok(None)` when the server no longer knows it.
    pub async fn attach(
        &self,
        uuid: &RequestId,
        wait_for: Duration,
    ) -> Result<Option<RelayToApp>, ClientError> {
        let (ack_tx, ack_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut st = lock(&self.shared);
            st.attaches.insert(uuid.clone(), ack_tx);
            st.replies.insert(uuid.clone(), reply_tx);
        }
        let text = frame::encode(&AppToRelay::AttachReq(Attach { uuid: uuid.clone() }))
            .map_err(|e| ClientError::Input(e.to_string()))?;
        self.send_text(text).await?;
        let known = tokio::time::timeout(WAIT_TIMEOUT, ack_rx)
            .await
            .map_err(|_| ClientError::NoWait)?
            .map_err(|_| ClientError::Connection("closed".into()))?;
        if !known {
            lock(&self.shared).replies.remove(uuid);
            return Ok(None);
        }
        match tokio::time::timeout(wait_for, reply_rx).await {
            Ok(Ok(r)) => Ok(Some(r)),
            Ok(Err(_)) => Err(ClientError::Connection("closed".into())),
            Err(_) => Err(ClientError::Expired(uuid.clone())),
        }
    }
}

fn verify_signature(
    uuid: &RequestId,
    pubkey: &str,
    sig_hex: &str,
    message: &str,
) -> Result<(), ClientError> {
    let bad = |reason: String| ClientError::InvalidAnswer {
        uuid: uuid.clone(),
        reason,
    };
    let key = PublicKey::from_str_with_prefix(pubkey, "STM")
        .or_else(|_| PublicKey::from_str_with_prefix(pubkey, "TST"))
        .map_err(|e| bad(format!("public key: {e}")))?;
    let sig = Signature::from_hex(sig_hex).map_err(|e| bad(format!("signature: {e}")))?;
    let recovered = sig
        .recover_buffer(message.as_bytes())
        .map_err(|e| bad(format!("signature: {e}")))?;
    // A key recovered from (r, s) verifies (r, s) by construction: what verification adds
    // is hived's low-S rule.
    if recovered != key {
        return Err(bad(
            "the signature does not match the returned public key".into()
        ));
    }
    if !sig.is_low_s() {
        return Err(bad("the signature is not canonical (high S)".into()));
    }
    Ok(())
}

/// Turns a nack/err reply into an error (decrypting what is encrypted).
fn refusal(frame: RelayToApp, key: &AuthKey, uuid: &RequestId) -> ClientError {
    match frame {
        RelayToApp::AuthNack(n) | RelayToApp::SignNack(n) | RelayToApp::ChallengeNack(n) => {
            if let Some(d) = &n.data {
                match d.decrypt(key) {
                    Ok(p) if &p.0 == uuid => {}
                    _ => {
                        return ClientError::InvalidAnswer {
                            uuid: uuid.clone(),
                            reason: "nack data does not decrypt to the request uuid".into(),
                        };
                    }
                }
            }
            ClientError::Refused {
                uuid: uuid.clone(),
                reason: n.error,
            }
        }
        RelayToApp::AuthErr(e) | RelayToApp::SignErr(e) | RelayToApp::ChallengeErr(e) => {
            ClientError::Failed {
                uuid: uuid.clone(),
                message: e.message(key),
            }
        }
        other => ClientError::InvalidAnswer {
            uuid: uuid.clone(),
            reason: format!("unexpected reply {other:?}"),
        },
    }
}

fn dispatch(shared: &Mutex<Shared>, text: &str) {
    let Ok(f) = frame::parse::<RelayToApp>(text) else {
        tracing::debug!(frame = %frame::redact_for_log(text), "ignoring an unreadable frame");
        return;
    };
    let mut st = lock(shared);
    let kind_of = |f: &RelayToApp| match f {
        RelayToApp::AuthWait(_) => Some(Kind::Auth),
        RelayToApp::SignWait(_) => Some(Kind::Sign),
        RelayToApp::ChallengeWait(_) => Some(Kind::Challenge),
        _ => None,
    };
    match f {
        RelayToApp::AuthWait(ref w)
        | RelayToApp::SignWait(ref w)
        | RelayToApp::ChallengeWait(ref w) => {
            let kind = kind_of(&f);
            let pos = st.waiting.iter().position(|p| {
                Some(p.kind) == kind && w.account.as_ref().is_none_or(|a| a == &p.account)
            });
            if let Some(p) = pos.and_then(|i| st.waiting.remove(i)) {
                st.replies.insert(w.uuid.clone(), p.reply);
                st.last_wait = Some(w.uuid.clone());
                let _ = p.wait.send(Ok(w.clone()));
            }
        }
        RelayToApp::Error(e) => {
            // The server answers a socket's frames in order: an error answers the oldest
            // request still waiting for its `*_wait`. A rate-limit error names the command
            // it dropped: it goes to the oldest request of that command, and to none when
            // it names another (an attach_req).
            let pos = match e.error.strip_prefix(RATE_LIMITED) {
                Some(rest) => {
                    let cmd = rest.trim_start_matches(':').trim_start();
                    let kind = [
                        ("auth_req", Kind::Auth),
                        ("sign_req", Kind::Sign),
                        ("challenge_req", Kind::Challenge),
                    ]
                    .into_iter()
                    .find(|(c, _)| cmd.starts_with(c))
                    .map(|(_, k)| k);
                    kind.and_then(|k| st.waiting.iter().position(|p| p.kind == k))
                }
                None => (!st.waiting.is_empty()).then_some(0),
            };
            if let Some(p) = pos.and_then(|i| st.waiting.remove(i)) {
                let _ = p.wait.send(Err(ClientError::Server(e.error)));
            } else {
                tracing::warn!(error = %e.error, "server error not related to a request");
            }
        }
        RelayToApp::AttachAck(a) => {
            if let Some(tx) = st.attaches.remove(&a.uuid) {
                let _ = tx.send(true);
            }
        }
        RelayToApp::AttachNack(a) => {
            if let Some(tx) = st.attaches.remove(&a.uuid) {
                let _ = tx.send(false);
            }
        }
        other => {
            if let Some(uuid) = other.reply_uuid().cloned() {
                if let Some(tx) = st.replies.remove(&uuid) {
                    let _ = tx.send(other);
                } else {
                    tracing::debug!(%uuid, "reply for an unknown or finished request");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use has_crypto::PrivateKey;

    /// n − s, big-endian (s < n).
    fn order_minus(s: &[u8]) -> Vec<u8> {
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
            0xd0, 0x36, 0x41, 0x41,
        ];
        let mut out = vec![0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(N[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            out[i] = (d + 256 * borrow) as u8;
        }
        out
    }

    #[test]
    fn a_challenge_signature_must_recover_to_the_key_and_have_low_s() {
        let uuid = RequestId::generate();
        let key = PrivateKey::from_login(
            "alice",
            "correct horse battery",
            has_crypto::KeyRole::Posting,
        )
        .unwrap();
        let other =
            PrivateKey::from_login("bob", "correct horse battery", has_crypto::KeyRole::Posting)
                .unwrap();
        let pubkey = key.public_key().to_string();
        let sig = key.sign_buffer(b"challenge");
        verify_signature(&uuid, &pubkey, &sig.to_hex(), "challenge").unwrap();

        let wrong = [
            // Another key's signature, another message.
            (
                other.sign_buffer(b"challenge").to_hex(),
                "challenge",
                "does not match",
            ),
            (sig.to_hex(), "another challenge", "does not match"),
        ];
        for (hex, message, why) in wrong {
            let e = verify_signature(&uuid, &pubkey, &hex, message).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }

        // The same signature with s replaced by n − s (and the recovery parity flipped) still
        // recovers to the key; hived refuses it, and so do we.
        let mut bytes = sig.to_bytes();
        let high = order_minus(&bytes[33..]);
        bytes[33..].copy_from_slice(&high);
        bytes[0] = 27 + 4 + ((bytes[0] - 27) & 3 ^ 1);
        let high_s = Signature::from_bytes(&bytes).unwrap();
        assert_eq!(
            high_s.recover_buffer(b"challenge").unwrap(),
            *key.public_key()
        );
        let e = verify_signature(&uuid, &pubkey, &high_s.to_hex(), "challenge").unwrap_err();
        assert!(e.to_string().contains("high S"), "{e}");
    }
}
