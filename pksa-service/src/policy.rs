//! The policy: which requests the service approves, with a rule id and a reason for every
//! decision. Default deny for anything dangerous.
//!
//! Rules are tried in order; the first whose `accounts` and `apps` match the request
//! decides. With no matching rule the built-in `default` rule applies: posting operations
//! approved (broadcast or sign-only), anything needing active authority denied, owner
//! authority never; challenges signed with the posting or memo key; no memo decryption.
//! Owner authority is refused by every rule, whatever it says.
//!
//! Value: every operation that moves value or redirects future value reports its
//! counterparties and amounts ([`flows`], an exhaustive match over every operation). A rule's
//! `transfer_to` checks every counterparty (the account itself always passes), `max_transfer`
//! bounds each operation's total per asset (amount and fees together), and `spend_limits`
//! count every amount, whoever receives it. Amounts in another chain's assets (`TESTS` on
//! mainnet) are refused, and so is a transaction that needs no authority at all.
//!
//! Everything here is pure: the same inputs give the same decision.

use std::collections::BTreeMap;

use has_protocol::KeyType;
use hive_chain::{Asset, ChainId, Level, Operation, RequiredAuthorities, Symbol};
use serde::{Deserialize, Serialize};

pub use crate::state::spend::Spend;

/// `[policy]` in pksa.toml (or an included policy file).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A rolling spend limit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpendLimit {
    /// The limit, e.g. "100.000 HIVE", "50.000 HBD", "1000.000000 VESTS" (VESTS counts
    /// delegations).
    pub max: String,
    /// Window length in hours.
    pub window_hours: f64,
}

/// One rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Rule id, reported with every decision it makes.
    pub id: String,
    /// Accounts it applies to (globs; absent = all).
    pub accounts: Option<Vec<String>>,
    /// App names it applies to (globs; absent = all).
    pub apps: Option<Vec<String>>,
    /// Operation types allowed (absent = every posting operation).
    pub allowed_ops: Option<Vec<String>>,
    /// Key roles that may sign transactions: posting, active (owner never). Default posting.
    pub key_roles: Option<Vec<String>>,
    /// custom_json ids allowed (globs; absent = all).
    pub custom_json_ids: Option<Vec<String>>,
    /// Whether custom_json with required_auths (active authority) is allowed.
    #[serde(default)]
    pub active_custom_json: bool,
    /// Allowed recipients of transfer / recurrent_transfer / transfer_to_savings (absent = any).
    pub transfer_to: Option<Vec<String>>,
    /// Largest single transfer per asset, e.g. ["10.000 HIVE", "5.000 HBD"].
    pub max_transfer: Option<Vec<String>>,
    /// Rolling spend limits per asset.
    pub spend_limits: Option<Vec<SpendLimit>>,
    /// Allowed vote weight range [min, max] (-10000..10000).
    pub vote_weight: Option<[i16; 2]>,
    /// Allow broadcasting (default true).
    pub broadcast: Option<bool>,
    /// Allow sign-only (default true).
    pub sign_only: Option<bool>,
    /// Key roles usable for challenges: memo, posting, active (default memo, posting).
    pub challenge_roles: Option<Vec<String>>,
    /// Allow memo decryption challenges (default false).
    #[serde(default)]
    pub memo_decrypt: bool,
    /// Maximum operations per transaction.
    pub max_ops: Option<usize>,
    /// Sign requests without a nonce are accepted from the apps this rule covers (default
    /// false: `nonce is required`). Some app libraries (hive-auth-client) send none. Replays
    /// are still refused: the same ciphertext is never signed twice in a session's life.
    #[serde(default)]
    pub sign_without_nonce: bool,
}

/// A decision with its rule and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Approved?
    pub approve: bool,
    /// Rule id.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// What this request spends, per limit (key: limit index within the rule), for the
    /// spend counters.
    pub spend: Vec<Spend>,
}

impl Decision {
    fn deny(rule: &str, reason: impl Into<String>) -> Self {
        Decision {
            approve: false,
            rule: rule.into(),
            reason: reason.into(),
            spend: vec![],
        }
    }
    fn approve(rule: &str, reason: impl Into<String>) -> Self {
        Decision {
            approve: true,
            rule: rule.into(),
            reason: reason.into(),
            spend: vec![],
        }
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = rest.get(pos + part.len()..).unwrap_or_default(),
                None => return false,
            }
        }
    }
    true
}

fn any_glob(list: &Option<Vec<String>>, text: &str) -> bool {
    list.as_ref()
        .is_none_or(|l| l.iter().any(|p| glob(p, text)))
}

fn parse_symbol_amount(s: &str) -> Result<Asset, String> {
    s.parse::<Asset>()
}

impl Rule {
    fn roles(&self) -> Vec<&str> {
        self.key_roles
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_else(|| vec!["posting"])
    }
    fn challenge_roles(&self) -> Vec<&str> {
        self.challenge_roles
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_else(|| vec!["memo", "posting"])
    }
}

impl PolicyConfig {
    /// Checks the rules: ids unique and non-empty, roles known, amounts parse.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            if r.id.is_empty() || r.id == "default" || !seen.insert(r.id.clone()) {
                return Err((
                    at("id"),
                    "must be non-empty, unique and not \"default\"".into(),
                ));
            }
            for role in r.roles() {
                if !matches!(role, "posting" | "active") {
                    return Err((
                        at("key_roles"),
                        format!("{role:?} must be posting or active (owner is never allowed)"),
                    ));
                }
            }
            for role in r.challenge_roles() {
                if !matches!(role, "memo" | "posting" | "active") {
                    return Err((
                        at("challenge_roles"),
                        format!("{role:?} must be memo, posting or active"),
                    ));
                }
            }
            if let Some(ops) = &r.allowed_ops {
                for op in ops {
                    if !hive_chain::ops::OPERATIONS.iter().any(|(_, n)| n == op) {
                        return Err((at("allowed_ops"), format!("unknown operation {op:?}")));
                    }
                }
            }
            for a in r.max_transfer.iter().flatten() {
                parse_symbol_amount(a).map_err(|e| (at("max_transfer"), e))?;
            }
            for l in r.spend_limits.iter().flatten() {
                parse_symbol_amount(&l.max).map_err(|e| (at("spend_limits.max"), e))?;
                if !(l.window_hours > 0.0 && l.window_hours <= 24.0 * 366.0) {
                    return Err((
                        at("spend_limits.window_hours"),
                        "must be more than 0 and at most a year".into(),
                    ));
                }
            }
            if let Some([lo, hi]) = r.vote_weight
                && (lo > hi || lo < -10000 || hi > 10000)
            {
                return Err((
                    at("vote_weight"),
                    "must be [min, max] within -10000..10000".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether a rule names `app` in its `apps` (a rule for all apps does not count).
    pub fn names_app(&self, app: &str) -> bool {
        self.rules.iter().any(|r| {
            r.apps
                .as_ref()
                .is_some_and(|l| l.iter().any(|p| glob(p, app)))
        })
    }

    /// Whether sign requests without a nonce are accepted for `account` from `app` (the
    /// rule that covers them says `sign_without_nonce = true`).
    pub fn sign_without_nonce(&self, account: &str, app: &str) -> bool {
        self.rule_for(account, app)
            .is_some_and(|r| r.sign_without_nonce)
    }

    fn rule_for(&self, account: &str, app: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| any_glob(&r.accounts, account) && any_glob(&r.apps, app))
    }

    /// Decides a sign request for `account` from `app` (the app recorded in the session)
    /// on `chain`.
    pub fn decide_sign(
        &self,
        account: &str,
        app: &str,
        ops: &[Operation],
        required: &RequiredAuthorities,
        broadcast: bool,
        chain: &ChainId,
    ) -> Decision {
        if required.accounts.is_empty() && required.other.is_empty() {
            return Decision::deny(
                "builtin",
                "the operations need no authority: there is nothing to sign",
            );
        }
        for op in ops {
            if let Some(a) = assets(op)
                .into_iter()
                .find(|a| !symbol_allowed(chain, a.symbol))
            {
                return Decision::deny(
                    "builtin",
                    format!(
                        "{} is not an asset of this chain ({})",
                        a.symbol.name(),
                        op.name()
                    ),
                );
            }
        }
        if let Some(other) = required.other.first() {
            return Decision::deny(
                "builtin",
                format!("requires {other}, which this service never signs with"),
            );
        }
        if required.accounts.iter().any(|(_, l)| *l == Level::Owner) {
            return Decision::deny("builtin", "owner authority is never used");
        }
        if let Some((a, _)) = required.accounts.iter().find(|(a, _)| a != account) {
            return Decision::deny(
                "builtin",
                format!("operations require the authority of {a}, not {account}"),
            );
        }
        let Some(rule) = self.rule_for(account, app) else {
            return default_sign(account, ops, required);
        };
        rule_sign(rule, account, ops, required, broadcast)
    }

    /// Decides a challenge request.
    pub fn decide_challenge(
        &self,
        account: &str,
        app: &str,
        key_type: KeyType,
        decrypt: bool,
        decrypt_enabled: bool,
    ) -> Decision {
        let (id, roles, memo_decrypt) = match self.rule_for(account, app) {
            Some(r) => (r.id.as_str(), r.challenge_roles(), r.memo_decrypt),
            None => ("default", vec!["memo", "posting"], false),
        };
        if decrypt && !(decrypt_enabled && memo_decrypt) {
            return Decision::deny(id, "memo decryption is not allowed");
        }
        if !roles.contains(&key_type.as_str()) {
            return Decision::deny(
                id,
                format!("challenges with the {key_type} key are not allowed"),
            );
        }
        Decision::approve(
            id,
            if decrypt {
                "memo decryption allowed"
            } else {
                "challenge signing allowed"
            },
        )
    }
}

/// A stable hash of a policy (sha256 of its canonical JSON), logged at start and reload.
pub fn hash(p: &PolicyConfig) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(p).unwrap_or_default()))
}

/// `policy check`: the decision for a decrypted sign_req_data, challenge_req_data, or a bare
/// list of operations (treated as a broadcast sign request).
pub fn explain(
    p: &PolicyConfig,
    v: &serde_json::Value,
    account: &str,
    app: &str,
    decrypt_enabled: bool,
    chain: &ChainId,
) -> Result<Decision, String> {
    if let Some(ops) = v
        .as_array()
        .or_else(|| v.get("ops").and_then(serde_json::Value::as_array))
    {
        let ops = Operation::list_from_json(ops).map_err(|e| e.to_string())?;
        // As the service does: what hived would refuse never reaches the rules.
        for op in &ops {
            op.validate()
                .map_err(|e| format!("invalid operation: {e}"))?;
        }
        let probe = hive_chain::Transaction {
            ref_block_num: 0,
            ref_block_prefix: 0,
            expiration: hive_chain::TimePointSec(0),
            operations: ops.clone(),
            extensions: Default::default(),
        };
        let broadcast = v
            .get("broadcast")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        return Ok(p.decide_sign(account, app, &ops, &probe.required(), broadcast, chain));
    }
    if v.get("challenge").is_some() {
        let kt: KeyType = serde_json::from_value(v.get("key_type").cloned().unwrap_or_default())
            .map_err(|e| format!("key_type: {e}"))?;
        let decrypt = v
            .get("decrypt")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        return Ok(p.decide_challenge(account, app, kt, decrypt, decrypt_enabled));
    }
    Err("expected a sign_req_data object (with ops), a challenge_req_data object, or a list of operations".into())
}

fn default_sign(account: &str, ops: &[Operation], required: &RequiredAuthorities) -> Decision {
    if let Some((_, level)) = required.accounts.iter().find(|(_, l)| *l != Level::Posting) {
        let op = ops
            .iter()
            .find(|o| {
                o.required()
                    .accounts
                    .iter()
                    .any(|(_, l)| *l != Level::Posting)
            })
            .map(Operation::name)
            .unwrap_or("?");
        return Decision::deny(
            "default",
            format!("{op} needs {level} authority; no rule allows it"),
        );
    }
    // Posting operations that redirect value (comment beneficiaries) need a rule naming them.
    if let Some(op) = ops
        .iter()
        .find(|o| flows(o).counterparties.iter().any(|c| *c != account))
    {
        return Decision::deny(
            "default",
            format!(
                "{} redirects rewards to other accounts; no rule allows it",
                op.name()
            ),
        );
    }
    Decision::approve("default", "posting operations are approved by default")
}

fn rule_sign(
    rule: &Rule,
    account: &str,
    ops: &[Operation],
    required: &RequiredAuthorities,
    broadcast: bool,
) -> Decision {
    let id = rule.id.as_str();
    if !broadcast && rule.sign_only == Some(false) {
        return Decision::deny(id, "sign-only is not allowed");
    }
    if broadcast && rule.broadcast == Some(false) {
        return Decision::deny(id, "broadcasting is not allowed");
    }
    if let Some(max) = rule.max_ops
        && ops.len() > max
    {
        return Decision::deny(
            id,
            format!("{} operations exceed the maximum of {max}", ops.len()),
        );
    }
    let roles = rule.roles();
    for (_, level) in &required.accounts {
        if !roles.contains(&level.as_str()) {
            return Decision::deny(id, format!("{level} authority is not allowed by this rule"));
        }
    }
    let max_transfer: Vec<Asset> = rule
        .max_transfer
        .iter()
        .flatten()
        .filter_map(|m| parse_symbol_amount(m).ok())
        .collect();
    let mut totals: BTreeMap<Symbol, i64> = BTreeMap::new();
    for op in ops {
        let name = op.name();
        if let Some(allowed) = &rule.allowed_ops {
            if !allowed.iter().any(|a| a == name) {
                return Decision::deny(id, format!("operation {name} is not allowed"));
            }
        } else if op
            .required()
            .accounts
            .iter()
            .any(|(_, l)| *l != Level::Posting)
        {
            return Decision::deny(
                id,
                format!(
                    "operation {name} needs active authority and the rule lists no allowed_ops"
                ),
            );
        }
        match op {
            Operation::CustomJson(c) => {
                if !any_glob(&rule.custom_json_ids, &c.id) {
                    return Decision::deny(id, format!("custom_json id {:?} is not allowed", c.id));
                }
                if !c.required_auths.0.is_empty() && !rule.active_custom_json {
                    return Decision::deny(
                        id,
                        "custom_json with active authority (required_auths) is not allowed",
                    );
                }
            }
            Operation::Vote(v) => {
                if let Some([lo, hi]) = rule.vote_weight
                    && (v.weight < lo || v.weight > hi)
                {
                    return Decision::deny(
                        id,
                        format!("vote weight {} is outside [{lo}, {hi}]", v.weight),
                    );
                }
            }
            _ => {}
        }
        let flow = flows(op);
        for to in &flow.counterparties {
            if *to != account && !any_glob(&rule.transfer_to, to) {
                return Decision::deny(id, format!("{name}: counterparty {to:?} is not allowed"));
            }
        }
        let mut per_op: BTreeMap<Symbol, i64> = BTreeMap::new();
        for a in &flow.amounts {
            let e = per_op.entry(a.symbol).or_insert(0);
            *e = e.saturating_add(a.amount.max(0));
        }
        for (symbol, amount) in per_op {
            if let Some(max) = max_transfer.iter().find(|m| m.symbol == symbol)
                && amount > max.amount
            {
                let moved = Asset { amount, symbol };
                return Decision::deny(
                    id,
                    format!("{name} moves {moved}, more than the per-operation maximum {max}"),
                );
            }
            let t = totals.entry(symbol).or_insert(0);
            *t = t.saturating_add(amount);
        }
    }
    let mut spend = vec![];
    for l in rule.spend_limits.iter().flatten() {
        if let Ok(max) = parse_symbol_amount(&l.max) {
            let amount = totals.get(&max.symbol).copied().unwrap_or(0);
            if amount > 0 {
                spend.push(Spend {
                    counter: format!("{id}/{}", max.symbol.name()),
                    amount,
                    max: max.amount,
                    window_secs: (l.window_hours * 3600.0) as u64,
                });
            }
        }
    }
    Decision {
        approve: true,
        rule: id.into(),
        reason: format!("{} operation(s) allowed", ops.len()),
        spend,
    }
}

/// Whether `symbol` is an asset of `chain`: HIVE/HBD on mainnet, TESTS/TBD on the testnet,
/// either on another chain id (a mirrornet keeps mainnet's symbols, a private testnet may
/// not).
pub fn symbol_allowed(chain: &ChainId, symbol: Symbol) -> bool {
    let testnet = ChainId::from_name("testnet").ok();
    match symbol {
        Symbol::Vests => true,
        Symbol::Hive | Symbol::Hbd => Some(*chain) != testnet,
        Symbol::Tests | Symbol::Tbd => *chain != ChainId::MAINNET,
    }
}

/// What an operation moves: the accounts that receive value (or future value) and the
/// amounts that leave or are committed by the signing account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow<'a> {
    /// Accounts receiving value, rewards, routed withdrawals, delegations, escrow roles.
    pub counterparties: Vec<&'a str>,
    /// Amounts moved or committed (fees included).
    pub amounts: Vec<Asset>,
}

fn flow<'a>(counterparties: Vec<&'a str>, amounts: Vec<Asset>) -> Flow<'a> {
    Flow {
        counterparties,
        amounts,
    }
}

/// The value an operation moves. Every operation is listed (no catch-all): a new operation
/// cannot be signed before it is classified here.
pub fn flows(op: &Operation) -> Flow<'_> {
    use Operation as O;
    match op {
        O::Transfer(t) => flow(vec![&t.to], vec![t.amount]),
        O::TransferToVesting(t) => flow(vec![&t.to], vec![t.amount]),
        O::TransferToSavings(t) => flow(vec![&t.to], vec![t.amount]),
        O::TransferFromSavings(t) => flow(vec![&t.to], vec![t.amount]),
        O::RecurrentTransfer(t) => flow(
            vec![&t.to],
            vec![Asset {
                amount: t
                    .amount
                    .amount
                    .saturating_mul(i64::from(t.executions.max(1))),
                symbol: t.amount.symbol,
            }],
        ),
        O::EscrowTransfer(t) => flow(
            vec![&t.to, &t.agent],
            vec![t.hbd_amount, t.hive_amount, t.fee],
        ),
        O::EscrowRelease(t) => flow(vec![&t.receiver], vec![t.hbd_amount, t.hive_amount]),
        O::DelegateVestingShares(d) => flow(vec![&d.delegatee], vec![d.vesting_shares]),
        O::SetWithdrawVestingRoute(r) => flow(vec![&r.to_account], vec![]),
        O::WithdrawVesting(w) => flow(vec![], vec![w.vesting_shares]),
        O::LimitOrderCreate(l) => flow(vec![], vec![l.amount_to_sell]),
        O::LimitOrderCreate2(l) => flow(vec![], vec![l.amount_to_sell]),
        O::Convert(c) => flow(vec![], vec![c.amount]),
        O::CollateralizedConvert(c) => flow(vec![], vec![c.amount]),
        O::ClaimAccount(c) => flow(vec![], vec![c.fee]),
        // Spends a claimed account ticket on an account whose keys the operation sets.
        O::CreateClaimedAccount(a) => flow(vec![&a.new_account_name], vec![]),
        O::AccountCreate(a) => flow(vec![&a.new_account_name], vec![a.fee]),
        O::AccountCreateWithDelegation(a) => {
            flow(vec![&a.new_account_name], vec![a.fee, a.delegation])
        }
        O::CreateProposal(p) => {
            // The creator pays 10 HBD, plus 1 HBD per day the proposal runs beyond 60 days;
            // the receiver is paid by the DAO.
            let days = i64::from(p.end_date.0.saturating_sub(p.start_date.0)) / 86_400;
            flow(
                vec![&p.receiver],
                vec![Asset::hbd(10_000 + (days - 60).max(0) * 1_000)],
            )
        }
        O::CommentOptions(c) => flow(
            c.extensions
                .0
                .iter()
                .flat_map(|b| b.beneficiaries.iter().map(|x| x.account.as_str()))
                .collect(),
            vec![],
        ),
        O::Vote(_)
        | O::Comment(_)
        | O::DeleteComment(_)
        | O::CustomJson(_)
        | O::Custom(_)
        | O::CustomBinary(_)
        | O::FeedPublish(_)
        | O::AccountUpdate(_)
        | O::AccountUpdate2(_)
        | O::WitnessUpdate(_)
        | O::WitnessSetProperties(_)
        | O::WitnessBlockApprove(_)
        | O::AccountWitnessVote(_)
        | O::AccountWitnessProxy(_)
        | O::UpdateProposalVotes(_)
        | O::RemoveProposal(_)
        | O::UpdateProposal(_)
        | O::LimitOrderCancel(_)
        | O::CancelTransferFromSavings(_)
        | O::ClaimRewardBalance(_)
        | O::EscrowApprove(_)
        | O::EscrowDispute(_)
        | O::RequestAccountRecovery(_)
        | O::RecoverAccount(_)
        | O::ChangeRecoveryAccount(_)
        | O::ResetAccount(_)
        | O::SetResetAccount(_)
        | O::DeclineVotingRights(_)
        | O::Pow(_)
        | O::Pow2(_) => Flow::default(),
    }
}

/// Every asset an operation names (moved or not), for the chain check.
fn assets(op: &Operation) -> Vec<Asset> {
    use Operation as O;
    let mut v = flows(op).amounts;
    match op {
        O::CommentOptions(c) => v.push(c.max_accepted_payout),
        O::LimitOrderCreate(l) => v.push(l.min_to_receive),
        O::LimitOrderCreate2(l) => v.extend([l.exchange_rate.base, l.exchange_rate.quote]),
        O::FeedPublish(f) => v.extend([f.exchange_rate.base, f.exchange_rate.quote]),
        O::ClaimRewardBalance(c) => v.extend([c.reward_hive, c.reward_hbd, c.reward_vests]),
        O::WitnessUpdate(w) => v.extend([w.fee, w.props.account_creation_fee]),
        O::CreateProposal(p) => v.push(p.daily_pay),
        O::UpdateProposal(p) => v.push(p.daily_pay),
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: serde_json::Value) -> Vec<Operation> {
        Operation::list_from_json(v.as_array().unwrap()).unwrap()
    }

    fn req(ops: &[Operation]) -> RequiredAuthorities {
        let mut r = RequiredAuthorities::default();
        for o in ops {
            let q = o.required();
            r.accounts.extend(q.accounts);
            r.other.extend(q.other);
        }
        r
    }

    fn policy(toml_text: &str) -> PolicyConfig {
        let p: PolicyConfig = toml::from_str(toml_text).unwrap();
        p.validate().unwrap();
        p
    }

    #[test]
    fn globs() {
        assert!(glob("game-*", "game-move"));
        assert!(!glob("game-*", "other"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcdf"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn default_rule() {
        let p = PolicyConfig::default();
        let vote = ops(
            json!([["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 100}]]),
        );
        let d = p.decide_sign("alice", "app", &vote, &req(&vote), true, &ChainId::MAINNET);
        assert!(d.approve && d.rule == "default");
        let t = ops(
            json!([["transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": ""}]]),
        );
        let d = p.decide_sign("alice", "app", &t, &req(&t), true, &ChainId::MAINNET);
        assert!(!d.approve);
        assert!(
            d.reason.contains("transfer needs active authority"),
            "{}",
            d.reason
        );
        let other = ops(
            json!([["vote", {"voter": "carol", "author": "bob", "permlink": "p", "weight": 100}]]),
        );
        assert!(
            !p.decide_sign(
                "alice",
                "app",
                &other,
                &req(&other),
                true,
                &ChainId::MAINNET
            )
            .approve
        );
        assert!(
            p.decide_challenge("alice", "app", KeyType::Posting, false, false)
                .approve
        );
        assert!(
            !p.decide_challenge("alice", "app", KeyType::Active, false, false)
                .approve
        );
        assert!(
            !p.decide_challenge("alice", "app", KeyType::Memo, true, true)
                .approve
        );
    }

    #[test]
    fn transfer_rules() {
        let p = policy(
            r#"
            [[rules]]
            id = "bank"
            apps = ["game-*"]
            allowed_ops = ["transfer", "vote"]
            key_roles = ["posting", "active"]
            transfer_to = ["bob"]
            max_transfer = ["10.000 HIVE"]
            spend_limits = [{ max = "100.000 HIVE", window_hours = 24 }]
            vote_weight = [0, 5000]
            "#,
        );
        let t = |to: &str, amt: &str| {
            ops(json!([["transfer", {"from": "alice", "to": to, "amount": amt, "memo": ""}]]))
        };
        let ok = t("bob", "5.000 HIVE");
        let d = p.decide_sign("alice", "game-x", &ok, &req(&ok), true, &ChainId::MAINNET);
        assert!(d.approve, "{d:?}");
        assert_eq!(
            d.spend,
            vec![Spend {
                counter: "bank/HIVE".into(),
                amount: 5000,
                max: 100000,
                window_secs: 86400
            }]
        );
        let d = p.decide_sign(
            "alice",
            "game-x",
            &t("eve", "1.000 HIVE"),
            &req(&t("eve", "1.000 HIVE")),
            true,
            &ChainId::MAINNET,
        );
        assert_eq!(d.reason, "transfer: counterparty \"eve\" is not allowed");
        let big = t("bob", "11.000 HIVE");
        assert!(
            p.decide_sign("alice", "game-x", &big, &req(&big), true, &ChainId::MAINNET)
                .reason
                .contains("per-operation maximum")
        );
        // Another app falls through to the default rule.
        assert_eq!(
            p.decide_sign("alice", "other", &ok, &req(&ok), true, &ChainId::MAINNET)
                .rule,
            "default"
        );
        let v = ops(
            json!([["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 6000}]]),
        );
        assert!(
            p.decide_sign("alice", "game-x", &v, &req(&v), true, &ChainId::MAINNET)
                .reason
                .contains("vote weight")
        );
        let c = ops(
            json!([["comment", {"parent_author": "", "parent_permlink": "x", "author": "alice", "permlink": "p", "title": "", "body": "b", "json_metadata": ""}]]),
        );
        assert!(
            p.decide_sign("alice", "game-x", &c, &req(&c), true, &ChainId::MAINNET)
                .reason
                .contains("comment is not allowed")
        );
    }

    #[test]
    fn custom_json_and_owner() {
        let p = policy(
            r#"
            [[rules]]
            id = "game"
            custom_json_ids = ["game-*"]
            "#,
        );
        let cj = |id: &str, active: bool| {
            let (ra, rp) = if active {
                (vec!["alice"], vec![])
            } else {
                (vec![], vec!["alice"])
            };
            ops(
                json!([["custom_json", {"required_auths": ra, "required_posting_auths": rp, "id": id, "json": "{}"}]]),
            )
        };
        let a = cj("game-move", false);
        assert!(
            p.decide_sign("alice", "x", &a, &req(&a), true, &ChainId::MAINNET)
                .approve
        );
        let b = cj("other", false);
        assert!(
            !p.decide_sign("alice", "x", &b, &req(&b), true, &ChainId::MAINNET)
                .approve
        );
        let c = cj("game-move", true);
        assert!(
            !p.decide_sign("alice", "x", &c, &req(&c), true, &ChainId::MAINNET)
                .approve
        );
        let owner = ops(
            json!([["change_recovery_account", {"account_to_recover": "alice", "new_recovery_account": "bob", "extensions": []}]]),
        );
        assert_eq!(
            p.decide_sign("alice", "x", &owner, &req(&owner), true, &ChainId::MAINNET)
                .reason,
            "owner authority is never used"
        );
        let bad: PolicyConfig =
            toml::from_str("[[rules]]\nid = \"x\"\nkey_roles = [\"owner\"]").unwrap();
        assert!(bad.validate().is_err());
    }
    #[test]
    fn flags_limits_and_order() {
        let p = policy(
            r#"
            [[rules]]
            id = "bots"
            accounts = ["bot-*"]
            broadcast = false
            max_ops = 2
            challenge_roles = ["active"]
            memo_decrypt = true

            [[rules]]
            id = "signers"
            apps = ["signer"]
            sign_only = false
            allowed_ops = ["transfer"]
            key_roles = ["posting"]

            [[rules]]
            id = "active-json"
            apps = ["ops-*"]
            custom_json_ids = ["ops"]
            active_custom_json = true

            [[rules]]
            id = "active-json-keys"
            apps = ["keys"]
            allowed_ops = ["custom_json"]
            key_roles = ["posting", "active"]
            active_custom_json = true
            "#,
        );
        let vote = |voter: &str, n: usize| {
            let one =
                json!(["vote", {"voter": voter, "author": "bob", "permlink": "p", "weight": 100}]);
            ops(serde_json::Value::Array(vec![one; n]))
        };
        // broadcast = false: sign-only allowed, broadcast refused.
        let v = vote("bot-1", 1);
        assert!(
            p.decide_sign("bot-1", "x", &v, &req(&v), false, &ChainId::MAINNET)
                .approve
        );
        assert_eq!(
            p.decide_sign("bot-1", "x", &v, &req(&v), true, &ChainId::MAINNET)
                .reason,
            "broadcasting is not allowed"
        );
        // max_ops = 2.
        let v3 = vote("bot-1", 3);
        assert_eq!(
            p.decide_sign("bot-1", "x", &v3, &req(&v3), false, &ChainId::MAINNET)
                .reason,
            "3 operations exceed the maximum of 2"
        );
        // challenge_roles and memo_decrypt (which also needs the service switch).
        assert!(
            p.decide_challenge("bot-1", "x", KeyType::Active, false, false)
                .approve
        );
        assert!(
            !p.decide_challenge("bot-1", "x", KeyType::Posting, false, false)
                .approve
        );
        assert!(
            !p.decide_challenge("bot-1", "x", KeyType::Active, true, false)
                .approve
        );
        assert!(
            p.decide_challenge("bot-1", "x", KeyType::Active, true, true)
                .approve
        );
        // First match wins: bot-1 with app "signer" is still decided by "bots".
        assert_eq!(
            p.decide_sign("bot-1", "signer", &v, &req(&v), false, &ChainId::MAINNET)
                .rule,
            "bots"
        );
        // sign_only = false, and key_roles = posting refuses a transfer even though
        // allowed_ops lists it.
        let t = ops(
            json!([["transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": ""}]]),
        );
        assert_eq!(
            p.decide_sign("alice", "signer", &t, &req(&t), false, &ChainId::MAINNET)
                .reason,
            "sign-only is not allowed"
        );
        assert_eq!(
            p.decide_sign("alice", "signer", &t, &req(&t), true, &ChainId::MAINNET)
                .reason,
            "active authority is not allowed by this rule"
        );
        // allowed_ops absent and active custom_json allowed by the flag, but the rule's key
        // roles default to posting: still refused, with the reason naming the authority.
        let cj = ops(
            json!([["custom_json", {"required_auths": ["alice"], "required_posting_auths": [], "id": "ops", "json": "{}"}]]),
        );
        let d = p.decide_sign("alice", "ops-1", &cj, &req(&cj), true, &ChainId::MAINNET);
        assert!(!d.approve && d.rule == "active-json", "{d:?}");
        assert_eq!(d.reason, "active authority is not allowed by this rule");
        // With the active role and the op listed, the flag lets it through.
        let d = p.decide_sign("alice", "keys", &cj, &req(&cj), true, &ChainId::MAINNET);
        assert!(d.approve, "{d:?}");
        // No matching rule: the default refuses active authority.
        assert!(
            !p.decide_sign(
                "alice",
                "elsewhere",
                &cj,
                &req(&cj),
                true,
                &ChainId::MAINNET
            )
            .approve
        );
    }

    #[test]
    fn every_value_flow_is_counted_and_its_counterparties_checked() {
        let p = policy(
            r#"
            [[rules]]
            id = "bank"
            allowed_ops = ["escrow_transfer", "escrow_release", "set_withdraw_vesting_route",
                "delegate_vesting_shares", "transfer_to_savings", "recurrent_transfer",
                "account_create", "create_proposal", "comment_options", "transfer"]
            key_roles = ["posting", "active"]
            transfer_to = ["bob"]
            max_transfer = ["10.000 HBD", "10.000 HIVE", "100.000000 VESTS"]
            spend_limits = [{ max = "15.000 HBD", window_hours = 24 }]
            "#,
        );
        let decide = |op: serde_json::Value| {
            let o = ops(json!([op]));
            p.decide_sign("alice", "x", &o, &req(&o), true, &ChainId::MAINNET)
        };
        let escrow = |to: &str, agent: &str, hbd: &str, fee: &str| {
            json!(["escrow_transfer", {"from": "alice", "to": to, "agent": agent, "escrow_id": 1,
                "hbd_amount": hbd, "hive_amount": "0.000 HIVE", "fee": fee, "json_meta": "",
                "ratification_deadline": "2030-01-01T00:00:00", "escrow_expiration": "2030-02-01T00:00:00"}])
        };
        // Recipient and agent are both counterparties; amount and fee are summed.
        assert!(
            decide(escrow("carol", "bob", "1.000 HBD", "0.001 HBD"))
                .reason
                .contains("\"carol\"")
        );
        assert!(
            decide(escrow("bob", "carol", "1.000 HBD", "0.001 HBD"))
                .reason
                .contains("\"carol\"")
        );
        let d = decide(escrow("bob", "bob", "6.000 HBD", "5.000 HBD"));
        assert!(
            !d.approve && d.reason.contains("moves 11.000 HBD"),
            "{}",
            d.reason
        );
        let d = decide(escrow("bob", "bob", "6.000 HBD", "4.000 HBD"));
        assert!(d.approve, "{}", d.reason);
        assert_eq!(d.spend[0].amount, 10_000, "amount + fee counted");
        // Value redirected to others.
        for (what, op) in [
            (
                "route",
                json!(["set_withdraw_vesting_route", {"from_account": "alice", "to_account": "carol", "percent": 100, "auto_vest": false}]),
            ),
            (
                "delegation",
                json!(["delegate_vesting_shares", {"delegator": "alice", "delegatee": "carol", "vesting_shares": "1.000000 VESTS"}]),
            ),
            (
                "savings",
                json!(["transfer_to_savings", {"from": "alice", "to": "carol", "amount": "1.000 HBD", "memo": ""}]),
            ),
            (
                "release",
                json!(["escrow_release", {"from": "alice", "to": "bob", "agent": "bob", "who": "alice", "receiver": "carol", "escrow_id": 1, "hbd_amount": "1.000 HBD", "hive_amount": "0.000 HIVE"}]),
            ),
            (
                "proposal",
                json!(["create_proposal", {"creator": "alice", "receiver": "carol", "start_date": "2030-01-01T00:00:00", "end_date": "2030-02-01T00:00:00", "daily_pay": "100.000 HBD", "subject": "s", "permlink": "p"}]),
            ),
            (
                "beneficiaries",
                json!(["comment_options", {"author": "alice", "permlink": "p", "max_accepted_payout": "1000000.000 HBD", "percent_hbd": 10000, "allow_votes": true, "allow_curation_rewards": true, "extensions": [[0, {"beneficiaries": [{"account": "carol", "weight": 10000}]}]]}]),
            ),
        ] {
            let d = decide(op);
            assert!(
                !d.approve && d.reason.contains("\"carol\""),
                "{what}: {}",
                d.reason
            );
        }
        // The account itself is always a fine counterparty (a power-up, own savings).
        let own = json!(["transfer_to_savings", {"from": "alice", "to": "alice", "amount": "1.000 HBD", "memo": ""}]);
        assert!(decide(own).approve);
        // A recurrent transfer counts every execution.
        let rec = json!(["recurrent_transfer", {"from": "alice", "to": "bob", "amount": "2.000 HBD", "memo": "", "recurrence": 24, "executions": 6}]);
        assert!(decide(rec).reason.contains("moves 12.000 HBD"));
        // A proposal costs its creator 10 HBD plus 1 HBD per day beyond 60.
        let prop = json!(["create_proposal", {"creator": "alice", "receiver": "bob", "start_date": "2030-01-01T00:00:00", "end_date": "2030-04-01T00:00:00", "daily_pay": "1.000 HBD", "subject": "s", "permlink": "p"}]);
        assert!(decide(prop).reason.contains("moves 40.000 HBD"));
        // Account creation: the fee, to the new account.
        let create = json!(["account_create", {"fee": "3.000 HIVE", "creator": "alice", "new_account_name": "bob",
            "owner": {"weight_threshold": 1, "account_auths": [], "key_auths": []},
            "active": {"weight_threshold": 1, "account_auths": [], "key_auths": []},
            "posting": {"weight_threshold": 1, "account_auths": [], "key_auths": []},
            "memo_key": "STM1111111111111111111111111111111114T1Anm", "json_metadata": ""}]);
        assert!(decide(create).approve);
        // Spend limits add up over the transaction.
        let two = ops(json!([
            ["transfer", {"from": "alice", "to": "bob", "amount": "8.000 HBD", "memo": ""}],
            ["transfer", {"from": "alice", "to": "bob", "amount": "8.000 HBD", "memo": ""}]
        ]));
        let d = p.decide_sign("alice", "x", &two, &req(&two), true, &ChainId::MAINNET);
        assert!(d.approve && d.spend[0].amount == 16_000);
    }

    #[test]
    fn another_chains_assets_and_authority_free_transactions_are_refused() {
        let p = PolicyConfig::default();
        let t = |amount: &str| {
            ops(json!([["transfer", {"from": "alice", "to": "bob", "amount": amount, "memo": ""}]]))
        };
        let testnet = ChainId::from_name("testnet").unwrap();
        let d = p.decide_sign(
            "alice",
            "x",
            &t("1.000 TESTS"),
            &req(&t("1.000 TESTS")),
            true,
            &ChainId::MAINNET,
        );
        assert!(
            !d.approve && d.reason.contains("TESTS is not an asset of this chain"),
            "{}",
            d.reason
        );
        let d = p.decide_sign(
            "alice",
            "x",
            &t("1.000 HIVE"),
            &req(&t("1.000 HIVE")),
            true,
            &testnet,
        );
        assert!(
            !d.approve && d.reason.contains("HIVE is not an asset"),
            "{}",
            d.reason
        );
        // Also in fields that move nothing (a payout cap).
        let opts = ops(
            json!([["comment_options", {"author": "alice", "permlink": "p", "max_accepted_payout": "1.000 TBD", "percent_hbd": 10000, "allow_votes": true, "allow_curation_rewards": true, "extensions": []}]]),
        );
        assert!(
            !p.decide_sign("alice", "x", &opts, &req(&opts), true, &ChainId::MAINNET)
                .approve
        );
        let none = ops(
            json!([["custom_json", {"required_auths": [], "required_posting_auths": [], "id": "x", "json": "{}"}]]),
        );
        let d = p.decide_sign("alice", "x", &none, &req(&none), true, &ChainId::MAINNET);
        assert_eq!((d.approve, d.rule.as_str()), (false, "builtin"));
    }

    #[test]
    fn the_default_rule_refuses_rewards_redirected_to_others() {
        let p = PolicyConfig::default();
        let b = |who: &str| {
            ops(
                json!([["comment_options", {"author": "alice", "permlink": "p", "max_accepted_payout": "1000000.000 HBD", "percent_hbd": 10000, "allow_votes": true, "allow_curation_rewards": true, "extensions": [[0, {"beneficiaries": [{"account": who, "weight": 500}]}]]}]]),
            )
        };
        let d = p.decide_sign(
            "alice",
            "x",
            &b("carol"),
            &req(&b("carol")),
            true,
            &ChainId::MAINNET,
        );
        assert!(
            !d.approve && d.reason.contains("redirects rewards"),
            "{}",
            d.reason
        );
        let plain = ops(
            json!([["comment_options", {"author": "alice", "permlink": "p", "max_accepted_payout": "1000000.000 HBD", "percent_hbd": 10000, "allow_votes": true, "allow_curation_rewards": true, "extensions": []}]]),
        );
        assert!(
            p.decide_sign("alice", "x", &plain, &req(&plain), true, &ChainId::MAINNET)
                .approve
        );
    }
}
