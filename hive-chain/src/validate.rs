//! hived's protocol checks (`operation::validate()` in hived's `hive_operations.cpp`, plus the
//! `custom_json` size limit its evaluator applies), run before anything is signed: an
//! operation a node would reject is refused with the field and the rule it breaks, instead of
//! being signed and failing at broadcast (or being handed to an app as a signed transaction
//! no node accepts). The dry-run node applies the same checks.
//!
//! Only protocol-level rules (no chain state): account name syntax, lengths, percent ranges,
//! asset symbols and signs, JSON validity, authority sizes. Strings are Rust strings, so
//! hived's UTF-8 checks always hold.

use crate::error::{Error, Result};
use crate::ops::*;
use crate::types::{Asset, Authority, Price, Symbol};

/// 100 % in basis points (`HIVE_100_PERCENT`).
pub const HIVE_100_PERCENT: u32 = 10_000;
/// A permlink is shorter than this many bytes (`HIVE_MAX_PERMLINK_LENGTH`).
pub const MAX_PERMLINK_LENGTH: usize = 256;
/// A comment title is shorter than this many bytes (`HIVE_COMMENT_TITLE_LIMIT`).
pub const COMMENT_TITLE_LIMIT: usize = 256;
/// A memo is shorter than this many bytes (`HIVE_MAX_MEMO_SIZE`).
pub const MAX_MEMO_SIZE: usize = 2048;
/// Longest `custom_json` / `custom_binary` id (`HIVE_CUSTOM_OP_ID_MAX_LENGTH`).
pub const CUSTOM_OP_ID_MAX_LENGTH: usize = 32;
/// Longest `custom_json` json / `custom_binary` data (`HIVE_CUSTOM_OP_DATA_MAX_LENGTH`).
pub const CUSTOM_OP_DATA_MAX_LENGTH: usize = 8192;
/// Most accounts and keys in one authority (`HIVE_MAX_AUTHORITY_MEMBERSHIP`).
pub const MAX_AUTHORITY_MEMBERSHIP: usize = 40;
/// Beneficiaries per comment, exclusive (`HIVE_BENEFICIARY_LIMIT`).
pub const BENEFICIARY_LIMIT: usize = 128;
/// Longest witness URL (`HIVE_MAX_WITNESS_URL_LENGTH`).
pub const MAX_WITNESS_URL_LENGTH: usize = 2048;
/// Shortest recurrence of a recurrent transfer, in hours.
pub const MIN_RECURRENT_TRANSFERS_RECURRENCE: u16 = 24;
/// Longest life of a recurrent transfer, in days.
pub const MAX_RECURRENT_TRANSFER_END_DATE: u32 = 730;
/// Most proposal ids in one `update_proposal_votes` / `remove_proposal`.
pub const PROPOSAL_MAX_IDS_NUMBER: usize = 5;
/// Longest proposal subject.
pub const PROPOSAL_SUBJECT_MAX_LENGTH: usize = 80;

/// hived's `is_valid_account_name`: 3 to 16 characters, dot-separated labels of at least 3
/// characters, each starting with a lowercase letter, ending with a letter or digit, and made
/// of lowercase letters, digits and dashes.
pub fn is_valid_account_name(name: &str) -> bool {
    (3..=16).contains(&name.len())
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            b.len() >= 3
                && b.first().is_some_and(u8::is_ascii_lowercase)
                && b.last()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// One operation's checks, with its name for the errors.
struct Check {
    op: &'static str,
}

impl Check {
    fn fail(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Operation {
            op: self.op.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn that(&self, ok: bool, field: &str, message: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(field, message))
        }
    }

    fn account(&self, field: &str, name: &str) -> Result<()> {
        self.that(
            is_valid_account_name(name),
            field,
            "not a valid account name",
        )
    }

    fn accounts(&self, list: &[(&str, &str)]) -> Result<()> {
        list.iter()
            .try_for_each(|(field, name)| self.account(field, name))
    }

    fn account_or_empty(&self, field: &str, name: &str) -> Result<()> {
        if name.is_empty() {
            Ok(())
        } else {
            self.account(field, name)
        }
    }

    fn permlink(&self, field: &str, p: &str) -> Result<()> {
        self.that(
            p.len() < MAX_PERMLINK_LENGTH,
            field,
            "longer than 255 bytes",
        )
    }

    fn memo(&self, field: &str, m: &str) -> Result<()> {
        self.that(m.len() < MAX_MEMO_SIZE, field, "longer than 2047 bytes")
    }

    fn json(&self, field: &str, text: &str) -> Result<()> {
        self.that(
            serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
            field,
            "not valid JSON",
        )
    }

    fn json_or_empty(&self, field: &str, text: &str) -> Result<()> {
        if text.is_empty() {
            Ok(())
        } else {
            self.json(field, text)
        }
    }

    fn percent(&self, field: &str, v: u32) -> Result<()> {
        self.that(v <= HIVE_100_PERCENT, field, "more than 100 % (10000)")
    }

    fn symbol(&self, field: &str, a: &Asset, allowed: &[Symbol]) -> Result<()> {
        if allowed.contains(&a.symbol) {
            return Ok(());
        }
        let names: Vec<&str> = allowed
            .iter()
            .filter(|s| !matches!(s, Symbol::Tests | Symbol::Tbd))
            .map(Symbol::name)
            .collect();
        Err(self.fail(field, format!("must be {}", names.join(" or "))))
    }

    fn not_negative(&self, field: &str, a: &Asset) -> Result<()> {
        self.that(a.amount >= 0, field, "cannot be negative")
    }

    fn positive(&self, field: &str, a: &Asset) -> Result<()> {
        self.that(a.amount > 0, field, "must be greater than zero")
    }

    fn authority(&self, field: &str, a: &Authority) -> Result<()> {
        self.that(
            a.account_auths.0.len() + a.key_auths.0.len() <= MAX_AUTHORITY_MEMBERSHIP,
            field,
            "more than 40 accounts and keys",
        )?;
        for (name, _) in &a.account_auths.0 {
            self.account(field, name)?;
        }
        Ok(())
    }

    fn authorities(&self, list: &[(&str, &Authority)]) -> Result<()> {
        list.iter()
            .try_for_each(|(field, a)| self.authority(field, a))
    }

    /// `transfer_to_savings` and `transfer_from_savings`.
    fn savings(&self, from: &str, to: &str, amount: &Asset, memo: &str) -> Result<()> {
        self.accounts(&[("from", from), ("to", to)])?;
        self.positive("amount", amount)?;
        self.symbol("amount", amount, LIQUID)?;
        self.memo("memo", memo)
    }

    /// What `create_proposal` and `update_proposal` share.
    fn proposal(&self, daily_pay: &Asset, subject: &str, permlink: &str) -> Result<()> {
        self.symbol("daily_pay", daily_pay, HBD)?;
        self.not_negative("daily_pay", daily_pay)?;
        self.that(!subject.is_empty(), "subject", "is empty")?;
        self.that(
            subject.len() <= PROPOSAL_SUBJECT_MAX_LENGTH,
            "subject",
            "longer than 80 bytes",
        )?;
        self.permlink("permlink", permlink)
    }

    fn price(&self, field: &str, p: &Price) -> Result<()> {
        self.that(
            p.base.amount > 0 && p.quote.amount > 0,
            field,
            "both sides of a price must be positive",
        )?;
        self.that(
            p.base.symbol != p.quote.symbol,
            field,
            "a price needs two different assets",
        )
    }
}

const HIVE: &[Symbol] = &[Symbol::Hive, Symbol::Tests];
const HBD: &[Symbol] = &[Symbol::Hbd, Symbol::Tbd];
const VESTS: &[Symbol] = &[Symbol::Vests];
const LIQUID: &[Symbol] = &[Symbol::Hive, Symbol::Tests, Symbol::Hbd, Symbol::Tbd];

fn is_hive(a: &Asset) -> bool {
    HIVE.contains(&a.symbol)
}

fn is_hbd(a: &Asset) -> bool {
    HBD.contains(&a.symbol)
}

impl Operation {
    /// hived's `validate()` for this operation (see the module docs): Err names the
    /// operation, the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let c = Check { op: self.name() };
        match self {
            Operation::Vote(o) => {
                c.accounts(&[("voter", &o.voter), ("author", &o.author)])?;
                c.percent("weight", u32::from(o.weight.unsigned_abs()))?;
                c.permlink("permlink", &o.permlink)
            }
            Operation::Comment(o) => {
                c.that(
                    o.title.len() < COMMENT_TITLE_LIMIT,
                    "title",
                    "longer than 255 bytes",
                )?;
                c.that(!o.body.is_empty(), "body", "is empty")?;
                c.account_or_empty("parent_author", &o.parent_author)?;
                c.account("author", &o.author)?;
                c.permlink("parent_permlink", &o.parent_permlink)?;
                c.permlink("permlink", &o.permlink)?;
                c.json_or_empty("json_metadata", &o.json_metadata)
            }
            Operation::Transfer(o) => {
                c.accounts(&[("from", &o.from), ("to", &o.to)])?;
                c.symbol("amount", &o.amount, LIQUID)?;
                c.positive("amount", &o.amount)?;
                c.memo("memo", &o.memo)
            }
            Operation::TransferToVesting(o) => {
                c.account("from", &o.from)?;
                c.symbol("amount", &o.amount, HIVE)?;
                c.account_or_empty("to", &o.to)?;
                c.positive("amount", &o.amount)
            }
            Operation::WithdrawVesting(o) => {
                c.account("account", &o.account)?;
                c.symbol("vesting_shares", &o.vesting_shares, VESTS)
            }
            Operation::LimitOrderCreate(o) => {
                c.account("owner", &o.owner)?;
                c.that(
                    (is_hive(&o.amount_to_sell) && is_hbd(&o.min_to_receive))
                        || (is_hbd(&o.amount_to_sell) && is_hive(&o.min_to_receive)),
                    "amount_to_sell",
                    "a limit order must be for the HIVE:HBD market",
                )?;
                c.price(
                    "min_to_receive",
                    &Price {
                        base: o.amount_to_sell,
                        quote: o.min_to_receive,
                    },
                )
            }
            Operation::LimitOrderCreate2(o) => {
                c.account("owner", &o.owner)?;
                c.that(
                    o.amount_to_sell.symbol == o.exchange_rate.base.symbol,
                    "amount_to_sell",
                    "must be in the base asset of the price",
                )?;
                c.price("exchange_rate", &o.exchange_rate)?;
                c.that(
                    (is_hive(&o.amount_to_sell) && is_hbd(&o.exchange_rate.quote))
                        || (is_hbd(&o.amount_to_sell) && is_hive(&o.exchange_rate.quote)),
                    "amount_to_sell",
                    "a limit order must be for the HIVE:HBD market",
                )?;
                // amount_to_sell × price must not round to zero.
                let quote = i128::from(o.amount_to_sell.amount)
                    * i128::from(o.exchange_rate.quote.amount)
                    / i128::from(o.exchange_rate.base.amount.max(1));
                c.that(quote > 0, "amount_to_sell", "rounds to 0 when traded")
            }
            Operation::LimitOrderCancel(o) => c.account("owner", &o.owner),
            Operation::FeedPublish(o) => {
                c.account("publisher", &o.publisher)?;
                let r = &o.exchange_rate;
                c.that(
                    (is_hive(&r.base) && is_hbd(&r.quote))
                        || (is_hbd(&r.base) && is_hive(&r.quote)),
                    "exchange_rate",
                    "a price feed must be a HIVE/HBD price",
                )?;
                c.price("exchange_rate", r)
            }
            Operation::Convert(o) => {
                c.account("owner", &o.owner)?;
                c.symbol("amount", &o.amount, HBD)?;
                c.positive("amount", &o.amount)
            }
            Operation::CollateralizedConvert(o) => {
                c.account("owner", &o.owner)?;
                c.symbol("amount", &o.amount, HIVE)?;
                c.positive("amount", &o.amount)
            }
            Operation::AccountCreate(o) => {
                c.accounts(&[
                    ("new_account_name", &o.new_account_name),
                    ("creator", &o.creator),
                ])?;
                c.symbol("fee", &o.fee, HIVE)?;
                c.not_negative("fee", &o.fee)?;
                c.authorities(&[
                    ("owner", &o.owner),
                    ("active", &o.active),
                    ("posting", &o.posting),
                ])?;
                c.json_or_empty("json_metadata", &o.json_metadata)
            }
            Operation::AccountCreateWithDelegation(o) => {
                c.accounts(&[
                    ("new_account_name", &o.new_account_name),
                    ("creator", &o.creator),
                ])?;
                c.symbol("fee", &o.fee, HIVE)?;
                c.symbol("delegation", &o.delegation, VESTS)?;
                c.not_negative("fee", &o.fee)?;
                c.not_negative("delegation", &o.delegation)?;
                c.authorities(&[
                    ("owner", &o.owner),
                    ("active", &o.active),
                    ("posting", &o.posting),
                ])?;
                c.json_or_empty("json_metadata", &o.json_metadata)
            }
            Operation::CreateClaimedAccount(o) => {
                c.accounts(&[
                    ("creator", &o.creator),
                    ("new_account_name", &o.new_account_name),
                ])?;
                c.authorities(&[
                    ("owner", &o.owner),
                    ("active", &o.active),
                    ("posting", &o.posting),
                ])?;
                c.json_or_empty("json_metadata", &o.json_metadata)
            }
            Operation::ClaimAccount(o) => {
                c.account("creator", &o.creator)?;
                c.symbol("fee", &o.fee, HIVE)?;
                c.not_negative("fee", &o.fee)
            }
            Operation::AccountUpdate(o) => {
                c.account("account", &o.account)?;
                for (field, a) in [
                    ("owner", &o.owner),
                    ("active", &o.active),
                    ("posting", &o.posting),
                ] {
                    if let Some(a) = a {
                        for (name, _) in &a.account_auths.0 {
                            c.account(field, name)?;
                        }
                    }
                }
                c.json_or_empty("json_metadata", &o.json_metadata)
            }
            Operation::AccountUpdate2(o) => {
                c.account("account", &o.account)?;
                for (field, a) in [
                    ("owner", &o.owner),
                    ("active", &o.active),
                    ("posting", &o.posting),
                ] {
                    if let Some(a) = a {
                        c.authority(field, a)?;
                    }
                }
                c.json_or_empty("json_metadata", &o.json_metadata)?;
                c.json_or_empty("posting_json_metadata", &o.posting_json_metadata)
            }
            Operation::WitnessUpdate(o) => {
                c.account("owner", &o.owner)?;
                c.that(!o.url.is_empty(), "url", "is empty")?;
                c.that(
                    o.url.len() <= MAX_WITNESS_URL_LENGTH,
                    "url",
                    "longer than 2048 bytes",
                )?;
                c.not_negative("fee", &o.fee)
            }
            Operation::WitnessSetProperties(o) => {
                c.account("owner", &o.owner)?;
                c.that(
                    o.props.0.iter().any(|(k, _)| k == "key"),
                    "props",
                    "no signing key (\"key\") given",
                )
            }
            Operation::AccountWitnessVote(o) => {
                c.accounts(&[("account", &o.account), ("witness", &o.witness)])
            }
            Operation::AccountWitnessProxy(o) => {
                c.account("account", &o.account)?;
                c.account_or_empty("proxy", &o.proxy)?;
                c.that(o.proxy != o.account, "proxy", "cannot proxy to self")
            }
            Operation::Custom(o) => {
                let n = o.required_auths.0.len();
                c.that(
                    n > 0,
                    "required_auths",
                    "at least one account must be given",
                )?;
                c.that(
                    n <= MAX_AUTHORITY_MEMBERSHIP,
                    "required_auths",
                    "more than 40 accounts",
                )?;
                for a in &o.required_auths.0 {
                    c.account("required_auths", a)?;
                }
                Ok(())
            }
            Operation::CustomJson(o) => {
                let n = o.required_auths.0.len() + o.required_posting_auths.0.len();
                c.that(
                    n > 0,
                    "required_auths",
                    "at least one account must be given",
                )?;
                c.that(
                    n <= MAX_AUTHORITY_MEMBERSHIP,
                    "required_auths",
                    "more than 40 accounts",
                )?;
                for a in o.required_auths.0.iter().chain(&o.required_posting_auths.0) {
                    c.account("required_auths", a)?;
                }
                c.that(
                    o.id.len() <= CUSTOM_OP_ID_MAX_LENGTH,
                    "id",
                    "longer than 32 bytes",
                )?;
                c.that(
                    o.json.len() <= CUSTOM_OP_DATA_MAX_LENGTH,
                    "json",
                    "longer than 8192 bytes",
                )?;
                c.json("json", &o.json)
            }
            Operation::CustomBinary(o) => {
                let n = o.required_owner_auths.0.len()
                    + o.required_active_auths.0.len()
                    + o.required_posting_auths.0.len();
                c.that(
                    n > 0,
                    "required_auths",
                    "at least one account must be given",
                )?;
                c.that(
                    o.id.len() <= CUSTOM_OP_ID_MAX_LENGTH,
                    "id",
                    "longer than 32 bytes",
                )?;
                c.that(
                    o.data.0.len() <= CUSTOM_OP_DATA_MAX_LENGTH,
                    "data",
                    "longer than 8192 bytes",
                )
            }
            Operation::DeleteComment(o) => {
                c.permlink("permlink", &o.permlink)?;
                c.account("author", &o.author)
            }
            Operation::CommentOptions(o) => {
                c.account("author", &o.author)?;
                c.percent("percent_hbd", u32::from(o.percent_hbd))?;
                c.symbol("max_accepted_payout", &o.max_accepted_payout, HBD)?;
                c.not_negative("max_accepted_payout", &o.max_accepted_payout)?;
                c.permlink("permlink", &o.permlink)?;
                for b in &o.extensions.0 {
                    let list = &b.beneficiaries;
                    c.that(
                        !list.is_empty(),
                        "extensions",
                        "at least one beneficiary must be given",
                    )?;
                    c.that(
                        list.len() < BENEFICIARY_LIMIT,
                        "extensions",
                        "more than 127 beneficiaries",
                    )?;
                    let mut sum = 0u32;
                    for (i, x) in list.iter().enumerate() {
                        c.account("extensions", &x.account)?;
                        sum += u32::from(x.weight);
                        c.percent("extensions", sum)?;
                        if let Some(prev) = i.checked_sub(1).and_then(|p| list.get(p)) {
                            c.that(
                                prev.account < x.account,
                                "extensions",
                                "beneficiaries must be sorted by account, without repeats",
                            )?;
                        }
                    }
                }
                Ok(())
            }
            Operation::SetWithdrawVestingRoute(o) => {
                c.accounts(&[
                    ("from_account", &o.from_account),
                    ("to_account", &o.to_account),
                ])?;
                c.percent("percent", u32::from(o.percent))
            }
            Operation::RequestAccountRecovery(o) => {
                c.accounts(&[
                    ("recovery_account", &o.recovery_account),
                    ("account_to_recover", &o.account_to_recover),
                ])?;
                c.authority("new_owner_authority", &o.new_owner_authority)
            }
            Operation::RecoverAccount(o) => {
                c.account("account_to_recover", &o.account_to_recover)?;
                c.that(
                    o.new_owner_authority != o.recent_owner_authority,
                    "new_owner_authority",
                    "cannot be the recent owner authority",
                )?;
                c.that(
                    o.new_owner_authority.weight_threshold > 0,
                    "new_owner_authority",
                    "cannot be trivial",
                )
            }
            Operation::ChangeRecoveryAccount(o) => c.accounts(&[
                ("account_to_recover", &o.account_to_recover),
                ("new_recovery_account", &o.new_recovery_account),
            ]),
            Operation::EscrowTransfer(o) => {
                c.accounts(&[("from", &o.from), ("to", &o.to), ("agent", &o.agent)])?;
                c.not_negative("fee", &o.fee)?;
                c.not_negative("hbd_amount", &o.hbd_amount)?;
                c.not_negative("hive_amount", &o.hive_amount)?;
                c.that(
                    o.hbd_amount.amount > 0 || o.hive_amount.amount > 0,
                    "hive_amount",
                    "escrow must transfer a non-zero amount",
                )?;
                c.that(
                    o.from != o.agent && o.to != o.agent,
                    "agent",
                    "the agent must be a third party",
                )?;
                c.symbol("fee", &o.fee, LIQUID)?;
                c.symbol("hbd_amount", &o.hbd_amount, HBD)?;
                c.symbol("hive_amount", &o.hive_amount, HIVE)?;
                c.that(
                    o.ratification_deadline.0 < o.escrow_expiration.0,
                    "ratification_deadline",
                    "must be before the escrow expiration",
                )?;
                c.json_or_empty("json_meta", &o.json_meta)
            }
            Operation::EscrowApprove(o) => {
                c.accounts(&[
                    ("from", &o.from),
                    ("to", &o.to),
                    ("agent", &o.agent),
                    ("who", &o.who),
                ])?;
                c.that(
                    o.who == o.to || o.who == o.agent,
                    "who",
                    "to or agent must approve escrow",
                )
            }
            Operation::EscrowDispute(o) => {
                c.accounts(&[
                    ("from", &o.from),
                    ("to", &o.to),
                    ("agent", &o.agent),
                    ("who", &o.who),
                ])?;
                c.that(
                    o.who == o.from || o.who == o.to,
                    "who",
                    "must be from or to",
                )
            }
            Operation::EscrowRelease(o) => {
                c.accounts(&[
                    ("from", &o.from),
                    ("to", &o.to),
                    ("agent", &o.agent),
                    ("who", &o.who),
                    ("receiver", &o.receiver),
                ])?;
                c.that(
                    o.who == o.from || o.who == o.to || o.who == o.agent,
                    "who",
                    "must be from, to or agent",
                )?;
                c.that(
                    o.receiver == o.from || o.receiver == o.to,
                    "receiver",
                    "must be from or to",
                )?;
                c.not_negative("hbd_amount", &o.hbd_amount)?;
                c.not_negative("hive_amount", &o.hive_amount)?;
                c.that(
                    o.hbd_amount.amount > 0 || o.hive_amount.amount > 0,
                    "hive_amount",
                    "escrow must release a non-zero amount",
                )?;
                c.symbol("hbd_amount", &o.hbd_amount, HBD)?;
                c.symbol("hive_amount", &o.hive_amount, HIVE)
            }
            Operation::TransferToSavings(o) => c.savings(&o.from, &o.to, &o.amount, &o.memo),
            Operation::TransferFromSavings(o) => c.savings(&o.from, &o.to, &o.amount, &o.memo),
            Operation::CancelTransferFromSavings(o) => c.account("from", &o.from),
            Operation::DeclineVotingRights(o) => c.account("account", &o.account),
            Operation::ResetAccount(o) => c.accounts(&[
                ("reset_account", &o.reset_account),
                ("account_to_reset", &o.account_to_reset),
            ]),
            Operation::SetResetAccount(o) => {
                c.accounts(&[("account", &o.account), ("reset_account", &o.reset_account)])
            }
            Operation::ClaimRewardBalance(o) => {
                c.account("account", &o.account)?;
                c.symbol("reward_hive", &o.reward_hive, HIVE)?;
                c.symbol("reward_hbd", &o.reward_hbd, HBD)?;
                c.symbol("reward_vests", &o.reward_vests, VESTS)?;
                c.not_negative("reward_hive", &o.reward_hive)?;
                c.not_negative("reward_hbd", &o.reward_hbd)?;
                c.not_negative("reward_vests", &o.reward_vests)?;
                c.that(
                    o.reward_hive.amount > 0
                        || o.reward_hbd.amount > 0
                        || o.reward_vests.amount > 0,
                    "reward_hive",
                    "must claim something",
                )
            }
            Operation::DelegateVestingShares(o) => {
                c.accounts(&[("delegator", &o.delegator), ("delegatee", &o.delegatee)])?;
                c.that(
                    o.delegator != o.delegatee,
                    "delegatee",
                    "cannot delegate to yourself",
                )?;
                c.symbol("vesting_shares", &o.vesting_shares, VESTS)?;
                c.not_negative("vesting_shares", &o.vesting_shares)
            }
            Operation::CreateProposal(o) => {
                c.accounts(&[("creator", &o.creator), ("receiver", &o.receiver)])?;
                c.that(
                    o.end_date.0 > o.start_date.0,
                    "end_date",
                    "must be after start_date",
                )?;
                c.proposal(&o.daily_pay, &o.subject, &o.permlink)
            }
            Operation::UpdateProposal(o) => {
                c.account("creator", &o.creator)?;
                c.proposal(&o.daily_pay, &o.subject, &o.permlink)
            }
            Operation::UpdateProposalVotes(o) => {
                c.account("voter", &o.voter)?;
                c.that(
                    o.proposal_ids.len() <= PROPOSAL_MAX_IDS_NUMBER,
                    "proposal_ids",
                    "more than 5 proposals",
                )
            }
            Operation::RemoveProposal(o) => {
                c.account("proposal_owner", &o.proposal_owner)?;
                c.that(!o.proposal_ids.is_empty(), "proposal_ids", "is empty")?;
                c.that(
                    o.proposal_ids.len() <= PROPOSAL_MAX_IDS_NUMBER,
                    "proposal_ids",
                    "more than 5 proposals",
                )
            }
            Operation::RecurrentTransfer(o) => {
                c.accounts(&[("from", &o.from), ("to", &o.to)])?;
                c.that(o.from != o.to, "to", "cannot transfer to yourself")?;
                c.symbol("amount", &o.amount, LIQUID)?;
                c.not_negative("amount", &o.amount)?;
                c.memo("memo", &o.memo)?;
                c.that(
                    o.recurrence >= MIN_RECURRENT_TRANSFERS_RECURRENCE,
                    "recurrence",
                    "must be at least 24 hours",
                )?;
                c.that(o.executions >= 2, "executions", "must be at least 2")?;
                c.that(
                    u32::from(o.recurrence) * u32::from(o.executions) / 24
                        <= MAX_RECURRENT_TRANSFER_END_DATE,
                    "executions",
                    "the transfers would last longer than 730 days",
                )
            }
            Operation::Pow(o) => c.account("worker_account", &o.worker_account),
            Operation::Pow2(_) | Operation::WitnessBlockApprove(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(v: serde_json::Value) -> Operation {
        Operation::from_json(v, 0).unwrap()
    }

    fn field(v: serde_json::Value) -> Option<String> {
        match op(v).validate() {
            Ok(()) => None,
            Err(Error::Operation { field, .. }) => Some(field),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn account_names_as_hived_reads_them() {
        for good in [
            "abc",
            "alice",
            "a-b",
            "a1b",
            "abc.def",
            "hive-123456",
            "a23456789012345b",
        ] {
            assert!(is_valid_account_name(good), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Alice",
            "1abc",
            "abc-",
            "a_b",
            "ab.cde",
            "abc.",
            ".abc",
            "abc..def",
            "a234567890123456b",
            "ali ce",
            "alicé",
        ] {
            assert!(!is_valid_account_name(bad), "{bad}");
        }
    }

    #[test]
    fn vote_weight_and_permlink_at_their_limits() {
        let vote = |w: i64, p: usize| json!(["vote", {"voter": "alice", "author": "bob", "permlink": "p".repeat(p), "weight": w}]);
        assert_eq!(field(vote(10_000, 255)), None);
        assert_eq!(field(vote(-10_000, 0)), None);
        assert_eq!(field(vote(10_001, 1)).as_deref(), Some("weight"));
        assert_eq!(field(vote(-10_001, 1)).as_deref(), Some("weight"));
        assert_eq!(field(vote(20_000, 1)).as_deref(), Some("weight"));
        assert_eq!(field(vote(100, 256)).as_deref(), Some("permlink"));
        assert_eq!(field(vote(100, 300)).as_deref(), Some("permlink"));
    }

    #[test]
    fn custom_json_needs_json_an_account_and_bounded_sizes() {
        let cj = |id: &str, j: &str, posting: &[&str]| json!(["custom_json", {"required_auths": [], "required_posting_auths": posting, "id": id, "json": j}]);
        assert_eq!(field(cj("follow", "{\"a\":1}", &["alice"])), None);
        assert_eq!(
            field(cj("x", "not json", &["alice"])).as_deref(),
            Some("json")
        );
        assert_eq!(
            field(cj("x", &"x".repeat(100 * 1024), &["alice"])).as_deref(),
            Some("json")
        );
        let big = format!("\"{}\"", "a".repeat(8190));
        assert_eq!(big.len(), 8192);
        assert_eq!(field(cj("x", &big, &["alice"])), None);
        let too_big = format!("\"{}\"", "a".repeat(8191));
        assert_eq!(
            field(cj("x", &too_big, &["alice"])).as_deref(),
            Some("json")
        );
        assert_eq!(field(cj(&"i".repeat(32), "1", &["alice"])), None);
        assert_eq!(
            field(cj(&"i".repeat(33), "1", &["alice"])).as_deref(),
            Some("id")
        );
        assert_eq!(field(cj("x", "1", &[])).as_deref(), Some("required_auths"));
    }

    #[test]
    fn transfers_comments_and_beneficiaries() {
        let t = |amount: &str, memo: usize| json!(["transfer", {"from": "alice", "to": "bob", "amount": amount, "memo": "m".repeat(memo)}]);
        assert_eq!(field(t("1.000 HIVE", 2047)), None);
        assert_eq!(field(t("0.000 HIVE", 0)).as_deref(), Some("amount"));
        assert_eq!(field(t("1.000000 VESTS", 0)).as_deref(), Some("amount"));
        assert_eq!(field(t("1.000 HBD", 2048)).as_deref(), Some("memo"));
        let c = |title: usize, body: &str, meta: &str| json!(["comment", {"parent_author": "", "parent_permlink": "tag", "author": "alice", "permlink": "p", "title": "t".repeat(title), "body": body, "json_metadata": meta}]);
        assert_eq!(field(c(255, "b", "")), None);
        assert_eq!(field(c(256, "b", "")).as_deref(), Some("title"));
        assert_eq!(field(c(1, "", "")).as_deref(), Some("body"));
        assert_eq!(field(c(1, "b", "{")).as_deref(), Some("json_metadata"));
        let opts = |b: serde_json::Value| json!(["comment_options", {"author": "alice", "permlink": "p", "max_accepted_payout": "1000.000 HBD", "percent_hbd": 10000, "allow_votes": true, "allow_curation_rewards": true, "extensions": [[0, {"beneficiaries": b}]]}]);
        assert_eq!(
            field(opts(
                json!([{"account": "bob", "weight": 5000}, {"account": "carol", "weight": 5000}])
            )),
            None
        );
        assert_eq!(
            field(opts(
                json!([{"account": "bob", "weight": 6000}, {"account": "carol", "weight": 5000}])
            ))
            .as_deref(),
            Some("extensions")
        );
        // Unsorted ones are refused when read already.
        assert!(
            Operation::from_json(
                opts(json!([{"account": "carol", "weight": 1}, {"account": "bob", "weight": 1}])),
                0
            )
            .is_err()
        );
        assert_eq!(
            field(opts(json!([{"account": "Bob", "weight": 1}]))).as_deref(),
            Some("extensions")
        );
    }

    #[test]
    fn value_operations_keep_their_assets_and_counterparties() {
        assert_eq!(
            field(json!(["delegate_vesting_shares", {"delegator": "alice", "delegatee": "alice", "vesting_shares": "1.000000 VESTS"}]))
                .as_deref(),
            Some("delegatee")
        );
        assert_eq!(
            field(json!(["convert", {"owner": "alice", "requestid": 1, "amount": "1.000 HIVE"}]))
                .as_deref(),
            Some("amount")
        );
        assert_eq!(
            field(json!(["recurrent_transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": "", "recurrence": 23, "executions": 2}]))
                .as_deref(),
            Some("recurrence")
        );
        assert_eq!(
            field(json!(["recurrent_transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": "", "recurrence": 24, "executions": 731}]))
                .as_deref(),
            Some("executions")
        );
        assert_eq!(
            field(
                json!(["recurrent_transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": "", "recurrence": 24, "executions": 730}])
            ),
            None
        );
        assert_eq!(
            field(json!(["set_withdraw_vesting_route", {"from_account": "alice", "to_account": "bob", "percent": 10001, "auto_vest": false}]))
                .as_deref(),
            Some("percent")
        );
        assert_eq!(
            field(json!(["limit_order_create", {"owner": "alice", "orderid": 1, "amount_to_sell": "1.000 HIVE", "min_to_receive": "1.000 HIVE", "fill_or_kill": false, "expiration": "2030-01-01T00:00:00"}]))
                .as_deref(),
            Some("amount_to_sell")
        );
        assert_eq!(
            field(json!(["escrow_transfer", {"from": "alice", "to": "bob", "agent": "bob", "escrow_id": 1, "hbd_amount": "1.000 HBD", "hive_amount": "0.000 HIVE", "fee": "0.001 HIVE", "json_meta": "", "ratification_deadline": "2030-01-01T00:00:00", "escrow_expiration": "2030-01-02T00:00:00"}]))
                .as_deref(),
            Some("agent")
        );
    }
}
