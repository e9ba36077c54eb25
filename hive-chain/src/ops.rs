//! Every user-signable Hive operation (ids 0-49, hive-crypto.md §8).
//!
//! Each operation is a struct whose fields are declared in hived's order, so the derived
//! `Serialize` writes hived's binary layout through [`crate::ser`] and the condenser JSON
//! through serde_json. [`Operation`] reads both JSON forms in use — condenser
//! `["vote", {...}]` and appbase `{"type": "vote_operation", "value": {...}}` — and writes the
//! condenser form (what dhive and HAS apps use). Unknown fields are refused: a signer must not
//! drop part of what the app asked for.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::*;

/// The authority level an operation requires from an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Posting authority.
    Posting,
    /// Active authority (owner also satisfies it).
    Active,
    /// Owner authority.
    Owner,
}

impl Level {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Posting => "posting",
            Level::Active => "active",
            Level::Owner => "owner",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one operation needs to be valid on chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Required {
    /// (account, level) pairs.
    pub accounts: Vec<(String, Level)>,
    /// Authorities that are not an account's posting/active/owner authority (a witness
    /// signing key, recover_account's owner authorities, custom_binary's explicit
    /// authorities): a description, for the policy to deny.
    pub other: Vec<String>,
}

impl Required {
    fn of(account: &str, level: Level) -> Self {
        Required {
            accounts: vec![(account.to_owned(), level)],
            other: vec![],
        }
    }
    fn set(accounts: &AccountSet, level: Level) -> impl Iterator<Item = (String, Level)> + '_ {
        accounts.0.iter().map(move |a| (a.clone(), level))
    }
}

// ------------------------------------------------------------------ extension variants

/// One `comment_payout_beneficiaries` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beneficiary {
    /// Account.
    pub account: String,
    /// Weight in basis points.
    pub weight: u16,
}

/// `comment_payout_beneficiaries` (comment_options extension 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beneficiaries {
    /// Beneficiaries, sorted by account (hived requires it).
    pub beneficiaries: Vec<Beneficiary>,
}

/// `comment_options.extensions`: a set of static variants whose only alternative is 0 =
/// beneficiaries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CommentOptionsExtensions(pub Vec<Beneficiaries>);

impl Serialize for CommentOptionsExtensions {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|b| VariantRef(0, b)))
    }
}

impl<'de> Deserialize<'de> for CommentOptionsExtensions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let items = Vec::<Value>::deserialize(d)?;
        let mut out = vec![];
        for item in items {
            let (tag, value) = variant_parts(item, &["comment_payout_beneficiaries"])
                .map_err(de::Error::custom)?;
            if tag != 0 {
                return Err(de::Error::custom(format!(
                    "unknown comment_options extension {tag}"
                )));
            }
            let b: Beneficiaries = serde_json::from_value(value).map_err(de::Error::custom)?;
            if b.beneficiaries
                .windows(2)
                .any(|w| match (w.first(), w.get(1)) {
                    (Some(a), Some(c)) => a.account.as_bytes() >= c.account.as_bytes(),
                    _ => false,
                })
            {
                return Err(de::Error::custom(
                    "beneficiaries must be sorted by account, without duplicates",
                ));
            }
            out.push(b);
        }
        Ok(CommentOptionsExtensions(out))
    }
}

/// `update_proposal_end_date` (update_proposal extension 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalEndDate {
    /// New end date.
    pub end_date: TimePointSec,
}

/// `update_proposal.extensions`: 0 = void, 1 = end date.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UpdateProposalExtensions(pub Vec<ProposalEndDate>);

impl Serialize for UpdateProposalExtensions {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| VariantRef(1, e)))
    }
}

impl<'de> Deserialize<'de> for UpdateProposalExtensions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut out = vec![];
        for item in Vec::<Value>::deserialize(d)? {
            let (tag, value) = variant_parts(item, &["void_t", "update_proposal_end_date"])
                .map_err(de::Error::custom)?;
            if tag != 1 {
                return Err(de::Error::custom(format!(
                    "unsupported update_proposal extension {tag}"
                )));
            }
            out.push(serde_json::from_value(value).map_err(de::Error::custom)?);
        }
        Ok(UpdateProposalExtensions(out))
    }
}

/// `recurrent_transfer_pair_id` (recurrent_transfer extension 1, HF28).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairId {
    /// Lets one sender keep several recurrent transfers to the same recipient.
    pub pair_id: u8,
}

/// `recurrent_transfer.extensions`: 0 = void, 1 = pair id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RecurrentTransferExtensions(pub Vec<PairId>);

impl Serialize for RecurrentTransferExtensions {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| VariantRef(1, e)))
    }
}

impl<'de> Deserialize<'de> for RecurrentTransferExtensions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut out = vec![];
        for item in Vec::<Value>::deserialize(d)? {
            let (tag, value) = variant_parts(item, &["void_t", "recurrent_transfer_pair_id"])
                .map_err(de::Error::custom)?;
            if tag != 1 {
                return Err(de::Error::custom(format!(
                    "unsupported recurrent_transfer extension {tag}"
                )));
            }
            out.push(serde_json::from_value(value).map_err(de::Error::custom)?);
        }
        if out.len() > 1 {
            return Err(de::Error::custom("at most one pair_id extension"));
        }
        Ok(RecurrentTransferExtensions(out))
    }
}

// ------------------------------------------------------------------ pow structures

/// `pow` work (op 14).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowWork {
    /// Worker key.
    pub worker: PublicKeyField,
    /// Input digest.
    pub input: FixedBytes<32>,
    /// Signature.
    pub signature: FixedBytes<65>,
    /// Work digest.
    pub work: FixedBytes<32>,
}

/// `pow2_input`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pow2Input {
    /// Worker account.
    pub worker_account: String,
    /// Previous block id.
    pub prev_block: FixedBytes<20>,
    /// Nonce.
    pub nonce: U64,
}

/// `pow2` work alternative 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pow2 {
    /// Input.
    pub input: Pow2Input,
    /// Summary.
    pub pow_summary: u32,
}

/// `equihash_proof`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquihashProof {
    /// n.
    pub n: u32,
    /// k.
    pub k: u32,
    /// Seed.
    pub seed: FixedBytes<32>,
    /// Inputs.
    pub inputs: Vec<u32>,
}

/// `equihash_pow` work alternative 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquihashPow {
    /// Input.
    pub input: Pow2Input,
    /// Proof.
    pub proof: EquihashProof,
    /// Previous block id.
    pub prev_block: FixedBytes<20>,
    /// Summary.
    pub pow_summary: u32,
}

/// `pow2_work` = static_variant<pow2, equihash_pow>.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pow2Work {
    /// 0.
    Pow2(Pow2),
    /// 1.
    Equihash(EquihashPow),
}

impl Pow2Work {
    fn worker(&self) -> &str {
        match self {
            Pow2Work::Pow2(p) => &p.input.worker_account,
            Pow2Work::Equihash(p) => &p.input.worker_account,
        }
    }
}

impl Serialize for Pow2Work {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Pow2Work::Pow2(p) => VariantRef(0, p).serialize(s),
            Pow2Work::Equihash(p) => VariantRef(1, p).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Pow2Work {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, value) = variant_parts(Value::deserialize(d)?, &["pow2", "equihash_pow"])
            .map_err(de::Error::custom)?;
        match tag {
            0 => serde_json::from_value(value)
                .map(Pow2Work::Pow2)
                .map_err(de::Error::custom),
            1 => serde_json::from_value(value)
                .map(Pow2Work::Equihash)
                .map_err(de::Error::custom),
            t => Err(de::Error::custom(format!(
                "unknown pow2 work alternative {t}"
            ))),
        }
    }
}

// ------------------------------------------------------------------ operations

macro_rules! op_struct {
    ($(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $name { $( $(#[$fm])* pub $field: $ty ),* }
    };
}

op_struct!(/** 0 */ Vote { voter: String, author: String, permlink: String, weight: i16 });
op_struct!(/** 1 */ Comment { parent_author: String, parent_permlink: String, author: String, permlink: String, title: String, body: String, json_metadata: String });
op_struct!(/** 2 */ Transfer { from: String, to: String, amount: Asset, memo: String });
op_struct!(/** 3 */ TransferToVesting { from: String, to: String, amount: Asset });
op_struct!(/** 4 */ WithdrawVesting { account: String, vesting_shares: Asset });
op_struct!(/** 5 */ LimitOrderCreate { owner: String, orderid: u32, amount_to_sell: Asset, min_to_receive: Asset, fill_or_kill: bool, expiration: TimePointSec });
op_struct!(/** 6 */ LimitOrderCancel { owner: String, orderid: u32 });
op_struct!(/** 7 */ FeedPublish { publisher: String, exchange_rate: Price });
op_struct!(/** 8 */ Convert { owner: String, requestid: u32, amount: Asset });
op_struct!(/** 9 */ AccountCreate { fee: Asset, creator: String, new_account_name: String, owner: Authority, active: Authority, posting: Authority, memo_key: PublicKeyField, json_metadata: String });
op_struct!(/** 10 */ AccountUpdate { account: String, #[serde(default)] owner: Option<Authority>, #[serde(default)] active: Option<Authority>, #[serde(default)] posting: Option<Authority>, memo_key: PublicKeyField, json_metadata: String });
op_struct!(/** 11 */ WitnessUpdate { owner: String, url: String, block_signing_key: PublicKeyField, props: ChainProperties, fee: Asset });
op_struct!(/** 12 */ AccountWitnessVote { account: String, witness: String, approve: bool });
op_struct!(/** 13 */ AccountWitnessProxy { account: String, proxy: String });
op_struct!(/** 14 (obsolete mining) */ Pow { worker_account: String, block_id: FixedBytes<20>, nonce: U64, work: PowWork, props: ChainProperties });
op_struct!(/** 15 */ Custom { required_auths: AccountSet, id: u16, data: HexBytes });
op_struct!(/** 16 (HF26+: replaced report_over_production) */ WitnessBlockApprove { witness: String, block_id: FixedBytes<20> });
op_struct!(/** 17 */ DeleteComment { author: String, permlink: String });
op_struct!(/** 18 */ CustomJson { required_auths: AccountSet, required_posting_auths: AccountSet, id: String, json: String });
op_struct!(/** 19 */ CommentOptions { author: String, permlink: String, max_accepted_payout: Asset, #[serde(alias = "percent_steem_dollars")] percent_hbd: u16, allow_votes: bool, allow_curation_rewards: bool, #[serde(default)] extensions: CommentOptionsExtensions });
op_struct!(/** 20 */ SetWithdrawVestingRoute { from_account: String, to_account: String, percent: u16, auto_vest: bool });
op_struct!(/** 21 */ LimitOrderCreate2 { owner: String, orderid: u32, amount_to_sell: Asset, exchange_rate: Price, fill_or_kill: bool, expiration: TimePointSec });
op_struct!(/** 22 */ ClaimAccount { creator: String, fee: Asset, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 23 */ CreateClaimedAccount { creator: String, new_account_name: String, owner: Authority, active: Authority, posting: Authority, memo_key: PublicKeyField, json_metadata: String, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 24 */ RequestAccountRecovery { recovery_account: String, account_to_recover: String, new_owner_authority: Authority, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 25 */ RecoverAccount { account_to_recover: String, new_owner_authority: Authority, recent_owner_authority: Authority, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 26 */ ChangeRecoveryAccount { account_to_recover: String, new_recovery_account: String, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 27 */ EscrowTransfer { from: String, to: String, #[serde(alias = "sbd_amount")] hbd_amount: Asset, #[serde(alias = "steem_amount")] hive_amount: Asset, escrow_id: u32, agent: String, fee: Asset, json_meta: String, ratification_deadline: TimePointSec, escrow_expiration: TimePointSec });
op_struct!(/** 28 */ EscrowDispute { from: String, to: String, agent: String, who: String, escrow_id: u32 });
op_struct!(/** 29 */ EscrowRelease { from: String, to: String, agent: String, who: String, receiver: String, escrow_id: u32, #[serde(alias = "sbd_amount")] hbd_amount: Asset, #[serde(alias = "steem_amount")] hive_amount: Asset });
op_struct!(/** 30 (obsolete mining) */ Pow2Op { work: Pow2Work, #[serde(default)] new_owner_key: Option<PublicKeyField>, props: ChainProperties });
op_struct!(/** 31 */ EscrowApprove { from: String, to: String, agent: String, who: String, escrow_id: u32, approve: bool });
op_struct!(/** 32 */ TransferToSavings { from: String, to: String, amount: Asset, memo: String });
op_struct!(/** 33 */ TransferFromSavings { from: String, request_id: u32, to: String, amount: Asset, memo: String });
op_struct!(/** 34 */ CancelTransferFromSavings { from: String, request_id: u32 });
op_struct!(/** 35 */ CustomBinary { required_owner_auths: AccountSet, required_active_auths: AccountSet, required_posting_auths: AccountSet, required_auths: Vec<Authority>, id: String, data: HexBytes });
op_struct!(/** 36 */ DeclineVotingRights { account: String, decline: bool });
op_struct!(/** 37 */ ResetAccount { reset_account: String, account_to_reset: String, new_owner_authority: Authority });
op_struct!(/** 38 */ SetResetAccount { account: String, current_reset_account: String, reset_account: String });
op_struct!(/** 39 */ ClaimRewardBalance { account: String, #[serde(alias = "reward_steem")] reward_hive: Asset, #[serde(alias = "reward_sbd")] reward_hbd: Asset, reward_vests: Asset });
op_struct!(/** 40 */ DelegateVestingShares { delegator: String, delegatee: String, vesting_shares: Asset });
op_struct!(/** 41 */ AccountCreateWithDelegation { fee: Asset, delegation: Asset, creator: String, new_account_name: String, owner: Authority, active: Authority, posting: Authority, memo_key: PublicKeyField, json_metadata: String, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 42 */ WitnessSetProperties { owner: String, props: FlatMap<String, HexBytes>, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 43 */ AccountUpdate2 { account: String, #[serde(default)] owner: Option<Authority>, #[serde(default)] active: Option<Authority>, #[serde(default)] posting: Option<Authority>, #[serde(default)] memo_key: Option<PublicKeyField>, json_metadata: String, posting_json_metadata: String, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 44 */ CreateProposal { creator: String, receiver: String, start_date: TimePointSec, end_date: TimePointSec, daily_pay: Asset, subject: String, permlink: String, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 45 */ UpdateProposalVotes { voter: String, proposal_ids: Vec<I64>, approve: bool, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 46 */ RemoveProposal { proposal_owner: String, proposal_ids: Vec<I64>, #[serde(default)] extensions: NoExtensions });
op_struct!(/** 47 */ UpdateProposal { proposal_id: U64, creator: String, daily_pay: Asset, subject: String, permlink: String, #[serde(default)] extensions: UpdateProposalExtensions });
op_struct!(/** 48 */ CollateralizedConvert { owner: String, requestid: u32, amount: Asset });
op_struct!(/** 49 */ RecurrentTransfer { from: String, to: String, amount: Asset, memo: String, recurrence: u16, executions: u16, #[serde(default)] extensions: RecurrentTransferExtensions });

macro_rules! operations {
    ($( $id:literal $name:literal $variant:ident($ty:ty) ),* $(,)?) => {
        /// A Hive operation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Operation { $( $variant($ty) ),* }

        /// (id, name) of every operation we can sign.
        pub const OPERATIONS: &[(u8, &str)] = &[ $( ($id, $name) ),* ];

        // The binary form writes the id as one byte: its varint only while ids stay < 128.
        const _: () = { $( assert!($id < 128); )* };

        impl Operation {
            /// The static-variant id (hived `operations.hpp`).
            pub fn id(&self) -> u8 {
                match self { $( Operation::$variant(_) => $id ),* }
            }

            /// The condenser name (`vote`, `transfer`, …).
            pub fn name(&self) -> &'static str {
                match self { $( Operation::$variant(_) => $name ),* }
            }

            /// Writes `id ‖ fields` as one tuple (ids are < 128, so the varint id is the one
            /// byte `serialize_u8` writes); no intermediate buffer.
            fn serialize_binary<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(&self.id())?;
                match self { $( Operation::$variant(o) => t.serialize_element(o)? ),* }
                t.end()
            }

            fn body_json(&self) -> Result<Value> {
                match self {
                    $( Operation::$variant(o) => serde_json::to_value(o).map_err(|e| Error::Serialize(e.to_string())) ),*
                }
            }

            /// The id of a condenser operation name.
            fn id_of(name: &str) -> Option<u8> {
                match name { $( $name => Some($id), )* _ => None }
            }

            /// Reads the fields of operation `id` straight from `d` (no intermediate `Value`);
            /// only a JSON object is fields (serde would also take a struct as an array).
            fn body_from<'de, D: Deserializer<'de>>(id: u8, d: D) -> std::result::Result<Self, D::Error> {
                let d = Fields(d);
                match id {
                    $( $id => <$ty>::deserialize(d).map(Operation::$variant), )*
                    other => Err(de::Error::custom(format!("unknown operation id {other}"))),
                }
            }

        }
    };
}

operations! {
    0 "vote" Vote(Vote),
    1 "comment" Comment(Comment),
    2 "transfer" Transfer(Transfer),
    3 "transfer_to_vesting" TransferToVesting(TransferToVesting),
    4 "withdraw_vesting" WithdrawVesting(WithdrawVesting),
    5 "limit_order_create" LimitOrderCreate(LimitOrderCreate),
    6 "limit_order_cancel" LimitOrderCancel(LimitOrderCancel),
    7 "feed_publish" FeedPublish(FeedPublish),
    8 "convert" Convert(Convert),
    9 "account_create" AccountCreate(Box<AccountCreate>),
    10 "account_update" AccountUpdate(Box<AccountUpdate>),
    11 "witness_update" WitnessUpdate(Box<WitnessUpdate>),
    12 "account_witness_vote" AccountWitnessVote(AccountWitnessVote),
    13 "account_witness_proxy" AccountWitnessProxy(AccountWitnessProxy),
    14 "pow" Pow(Box<Pow>),
    15 "custom" Custom(Custom),
    16 "witness_block_approve" WitnessBlockApprove(WitnessBlockApprove),
    17 "delete_comment" DeleteComment(DeleteComment),
    18 "custom_json" CustomJson(CustomJson),
    19 "comment_options" CommentOptions(CommentOptions),
    20 "set_withdraw_vesting_route" SetWithdrawVestingRoute(SetWithdrawVestingRoute),
    21 "limit_order_create2" LimitOrderCreate2(LimitOrderCreate2),
    22 "claim_account" ClaimAccount(ClaimAccount),
    23 "create_claimed_account" CreateClaimedAccount(Box<CreateClaimedAccount>),
    24 "request_account_recovery" RequestAccountRecovery(RequestAccountRecovery),
    25 "recover_account" RecoverAccount(RecoverAccount),
    26 "change_recovery_account" ChangeRecoveryAccount(ChangeRecoveryAccount),
    27 "escrow_transfer" EscrowTransfer(EscrowTransfer),
    28 "escrow_dispute" EscrowDispute(EscrowDispute),
    29 "escrow_release" EscrowRelease(EscrowRelease),
    30 "pow2" Pow2(Box<Pow2Op>),
    31 "escrow_approve" EscrowApprove(EscrowApprove),
    32 "transfer_to_savings" TransferToSavings(TransferToSavings),
    33 "transfer_from_savings" TransferFromSavings(TransferFromSavings),
    34 "cancel_transfer_from_savings" CancelTransferFromSavings(CancelTransferFromSavings),
    35 "custom_binary" CustomBinary(CustomBinary),
    36 "decline_voting_rights" DeclineVotingRights(DeclineVotingRights),
    37 "reset_account" ResetAccount(ResetAccount),
    38 "set_reset_account" SetResetAccount(SetResetAccount),
    39 "claim_reward_balance" ClaimRewardBalance(ClaimRewardBalance),
    40 "delegate_vesting_shares" DelegateVestingShares(DelegateVestingShares),
    41 "account_create_with_delegation" AccountCreateWithDelegation(Box<AccountCreateWithDelegation>),
    42 "witness_set_properties" WitnessSetProperties(WitnessSetProperties),
    43 "account_update2" AccountUpdate2(Box<AccountUpdate2>),
    44 "create_proposal" CreateProposal(CreateProposal),
    45 "update_proposal_votes" UpdateProposalVotes(UpdateProposalVotes),
    46 "remove_proposal" RemoveProposal(RemoveProposal),
    47 "update_proposal" UpdateProposal(UpdateProposal),
    48 "collateralized_convert" CollateralizedConvert(CollateralizedConvert),
    49 "recurrent_transfer" RecurrentTransfer(RecurrentTransfer),
}

/// The fields of operation `name` from a JSON object. Fast path without path tracking; a
/// failure (rare) is read again with it, to name the field in the error.
fn parse_body(name: &str, body: &Value) -> Result<Operation> {
    let id = Operation::id_of(name).ok_or_else(|| Error::UnknownOperation(name.to_owned()))?;
    if !body.is_object() {
        return Err(Error::Operation {
            op: name.to_owned(),
            field: ".".into(),
            message: "fields must be a JSON object".into(),
        });
    }
    if let Ok(op) = Operation::body_from(id, body) {
        return Ok(op);
    }
    let mut track = serde_path_to_error::Track::new();
    match Operation::body_from(id, serde_path_to_error::Deserializer::new(body, &mut track)) {
        Ok(op) => Ok(op),
        Err(e) => Err(Error::Operation {
            op: name.to_owned(),
            field: track.path().to_string(),
            message: e.to_string(),
        }),
    }
}

/// A deserializer whose structs must be maps: forwards everything to the one it wraps, but
/// reads a struct with `deserialize_map` (derived structs also accept a sequence).
struct Fields<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Fields<D> {
    type Error = D::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, D::Error> {
        self.0.deserialize_any(v)
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> std::result::Result<V::Value, D::Error> {
        self.0.deserialize_map(v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

impl Operation {
    /// Parses one operation from either JSON form. `index` is only used in error messages.
    pub fn from_json(value: Value, index: usize) -> Result<Self> {
        Operation::from_json_ref(&value, index)
    }

    /// [`Operation::from_json`] without taking ownership (nothing is cloned).
    pub fn from_json_ref(value: &Value, index: usize) -> Result<Self> {
        let (name, body): (&str, &Value) = match value {
            Value::Array(a) if a.len() == 2 => match (a.first(), a.get(1)) {
                (Some(Value::String(n)), Some(body)) => (n.as_str(), body),
                _ => return Err(Error::OperationShape(index)),
            },
            Value::Object(o) => match (o.get("type"), o.get("value")) {
                (Some(Value::String(t)), Some(body)) => {
                    (t.strip_suffix("_operation").unwrap_or(t), body)
                }
                _ => return Err(Error::OperationShape(index)),
            },
            _ => return Err(Error::OperationShape(index)),
        };
        // hived's current name for op 16; dhive/hive-js still call it report_over_production
        // with a different layout, which no HAS app can meaningfully send.
        parse_body(name, body)
    }

    /// Parses a list of operations (the `ops` of a sign_req).
    pub fn list_from_json(values: &[Value]) -> Result<Vec<Self>> {
        let mut ops = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            ops.push(Operation::from_json_ref(v, i)?);
        }
        Ok(ops)
    }

    /// Parses a JSON array of operations from text (a sign_req's `ops` as an app writes it),
    /// straight into operations. A failure is explained as [`Operation::list_from_json`]
    /// explains it: which operation, which field.
    pub fn list_from_str(text: &str) -> Result<Vec<Self>> {
        let fast = match serde_json::from_str::<Vec<Operation>>(text) {
            Ok(ops) => return Ok(ops),
            Err(e) => e,
        };
        let values: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| Error::Transaction(format!("operations: {e}")))?;
        match Operation::list_from_json(&values) {
            Err(e) => Err(e),
            // Only a key repeated inside an operation gets here: the text form refuses it.
            Ok(_) => Err(Error::Transaction(format!("operations: {fast}"))),
        }
    }

    /// The condenser JSON form `[name, {fields}]`. Absent optional fields are left out,
    /// as dhive and hive-js write them (`JSON.stringify` drops `undefined`), not `null`.
    pub fn to_json(&self) -> Result<Value> {
        let mut body = self.body_json()?;
        drop_nulls(&mut body);
        Ok(Value::Array(vec![
            Value::String(self.name().to_owned()),
            body,
        ]))
    }

    /// The binary form: `varint(id) ‖ fields`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        crate::ser::to_bytes(self)
    }

    /// The authorities this operation requires (hived `get_required_*_authorities`,
    /// hive-crypto.md §8).
    pub fn required(&self) -> Required {
        use Level::*;
        use Operation as O;
        match self {
            O::Vote(o) => Required::of(&o.voter, Posting),
            O::Comment(o) => Required::of(&o.author, Posting),
            O::Transfer(o) => Required::of(&o.from, Active),
            O::TransferToVesting(o) => Required::of(&o.from, Active),
            O::WithdrawVesting(o) => Required::of(&o.account, Active),
            O::LimitOrderCreate(o) => Required::of(&o.owner, Active),
            O::LimitOrderCancel(o) => Required::of(&o.owner, Active),
            O::FeedPublish(o) => Required::of(&o.publisher, Active),
            O::Convert(o) => Required::of(&o.owner, Active),
            O::AccountCreate(o) => Required::of(&o.creator, Active),
            O::AccountUpdate(o) => {
                Required::of(&o.account, if o.owner.is_some() { Owner } else { Active })
            }
            O::WitnessUpdate(o) => Required::of(&o.owner, Active),
            O::AccountWitnessVote(o) => Required::of(&o.account, Active),
            O::AccountWitnessProxy(o) => Required::of(&o.account, Active),
            O::Pow(o) => Required::of(&o.worker_account, Active),
            O::Custom(o) => Required {
                accounts: Required::set(&o.required_auths, Active).collect(),
                other: vec![],
            },
            O::WitnessBlockApprove(o) => Required {
                accounts: vec![],
                other: vec![format!("the witness signing key of {}", o.witness)],
            },
            O::DeleteComment(o) => Required::of(&o.author, Posting),
            O::CustomJson(o) => Required {
                accounts: Required::set(&o.required_auths, Active)
                    .chain(Required::set(&o.required_posting_auths, Posting))
                    .collect(),
                other: vec![],
            },
            O::CommentOptions(o) => Required::of(&o.author, Posting),
            O::SetWithdrawVestingRoute(o) => Required::of(&o.from_account, Active),
            O::LimitOrderCreate2(o) => Required::of(&o.owner, Active),
            O::ClaimAccount(o) => Required::of(&o.creator, Active),
            O::CreateClaimedAccount(o) => Required::of(&o.creator, Active),
            O::RequestAccountRecovery(o) => Required::of(&o.recovery_account, Active),
            O::RecoverAccount(o) => Required {
                accounts: vec![],
                other: vec![format!(
                    "the new and recent owner authorities of {}",
                    o.account_to_recover
                )],
            },
            O::ChangeRecoveryAccount(o) => Required::of(&o.account_to_recover, Owner),
            O::EscrowTransfer(o) => Required::of(&o.from, Active),
            O::EscrowDispute(o) => Required::of(&o.who, Active),
            O::EscrowRelease(o) => Required::of(&o.who, Active),
            O::Pow2(o) => Required::of(o.work.worker(), Active),
            O::EscrowApprove(o) => Required::of(&o.who, Active),
            O::TransferToSavings(o) => Required::of(&o.from, Active),
            O::TransferFromSavings(o) => Required::of(&o.from, Active),
            O::CancelTransferFromSavings(o) => Required::of(&o.from, Active),
            O::CustomBinary(o) => Required {
                accounts: Required::set(&o.required_owner_auths, Owner)
                    .chain(Required::set(&o.required_active_auths, Active))
                    .chain(Required::set(&o.required_posting_auths, Posting))
                    .collect(),
                other: if o.required_auths.is_empty() {
                    vec![]
                } else {
                    vec![format!(
                        "{} explicit custom_binary authorities",
                        o.required_auths.len()
                    )]
                },
            },
            O::DeclineVotingRights(o) => Required::of(&o.account, Owner),
            O::ResetAccount(o) => Required::of(&o.reset_account, Active),
            O::SetResetAccount(o) => Required::of(
                &o.account,
                if o.current_reset_account.is_empty() {
                    Posting
                } else {
                    Owner
                },
            ),
            O::ClaimRewardBalance(o) => Required::of(&o.account, Posting),
            O::DelegateVestingShares(o) => Required::of(&o.delegator, Active),
            O::AccountCreateWithDelegation(o) => Required::of(&o.creator, Active),
            O::WitnessSetProperties(o) => Required {
                accounts: vec![],
                other: vec![format!("the witness signing key of {}", o.owner)],
            },
            O::AccountUpdate2(o) => {
                let level = if o.owner.is_some() {
                    Owner
                } else if o.active.is_some()
                    || o.posting.is_some()
                    || o.memo_key.is_some()
                    || !o.json_metadata.is_empty()
                {
                    Active
                } else {
                    Posting
                };
                Required::of(&o.account, level)
            }
            O::CreateProposal(o) => Required::of(&o.creator, Active),
            O::UpdateProposalVotes(o) => Required::of(&o.voter, Active),
            O::RemoveProposal(o) => Required::of(&o.proposal_owner, Active),
            O::UpdateProposal(o) => Required::of(&o.creator, Active),
            O::CollateralizedConvert(o) => Required::of(&o.owner, Active),
            O::RecurrentTransfer(o) => Required::of(&o.from, Active),
        }
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let body = self.body_json().map_err(serde::ser::Error::custom)?;
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(self.name())?;
            t.serialize_element(&body)?;
            t.end()
        } else {
            self.serialize_binary(s)
        }
    }
}

/// Reads either JSON form straight from the deserializer (JSON text is not first turned into a
/// `Value`). Accepts exactly what [`Operation::from_json`] accepts, except that a key repeated
/// inside an operation is refused here (a `Value` keeps only its last copy); errors name the
/// operation but not the field: [`Operation::list_from_str`] explains a failure in full.
impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(OpVisitor)
    }
}

struct OpVisitor;

impl<'de> de::Visitor<'de> for OpVisitor {
    type Value = Operation;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an operation: [name, {fields}] or {\"type\": name, \"value\": {fields}}")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Operation, A::Error> {
        let id = seq
            .next_element_seed(OpName { appbase: false })?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let op = seq
            .next_element_seed(Body(id))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok(op)
    }

    fn visit_map<A: de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Operation, A::Error> {
        let mut id = None;
        let mut op = None;
        // A "value" written before its "type" waits as a `Value`.
        let mut early: Option<Value> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => {
                    if id.is_some() {
                        return Err(de::Error::duplicate_field("type"));
                    }
                    id = Some(map.next_value_seed(OpName { appbase: true })?);
                }
                "value" => {
                    if op.is_some() || early.is_some() {
                        return Err(de::Error::duplicate_field("value"));
                    }
                    match id {
                        Some(id) => op = Some(map.next_value_seed(Body(id))?),
                        None => early = Some(map.next_value()?),
                    }
                }
                // Like `from_json`, other keys of the wrapper are not part of the operation.
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("type"))?;
        match (op, early) {
            (Some(op), _) => Ok(op),
            (None, Some(body)) => {
                de::DeserializeSeed::deserialize(Body(id), &body).map_err(de::Error::custom)
            }
            (None, None) => Err(de::Error::missing_field("value")),
        }
    }
}

/// An operation name, read without allocating: condenser `vote`, or in the appbase form
/// `vote_operation` (the suffix is optional there, as in `from_json`).
struct OpName {
    appbase: bool,
}

impl<'de> de::DeserializeSeed<'de> for OpName {
    type Value = u8;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<u8, D::Error> {
        d.deserialize_str(self)
    }
}

impl de::Visitor<'_> for OpName {
    type Value = u8;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an operation name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<u8, E> {
        let name = if self.appbase {
            v.strip_suffix("_operation").unwrap_or(v)
        } else {
            v
        };
        Operation::id_of(name).ok_or_else(|| E::custom(Error::UnknownOperation(name.to_owned())))
    }
}

/// The fields of the operation with this id.
struct Body(u8);

impl<'de> de::DeserializeSeed<'de> for Body {
    type Value = Operation;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Operation, D::Error> {
        Operation::body_from(self.0, d).map_err(|e| {
            let name = OPERATIONS
                .iter()
                .find(|(id, _)| *id == self.0)
                .map_or("operation", |(_, n)| n);
            de::Error::custom(format_args!("{name}: {e}"))
        })
    }
}

/// Removes the `null` members of an operation body (absent optional fields).
pub(crate) fn drop_nulls(body: &mut Value) {
    if let Value::Object(m) = body {
        m.retain(|_, v| !v.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vote_bytes_from_spec() {
        let op = Operation::from_json(json!(["vote", {"voter": "alice", "author": "bob", "permlink": "my-first-post", "weight": 10000}]), 0).unwrap();
        assert_eq!(
            hex::encode(op.to_bytes().unwrap()),
            "0005616c69636503626f620d6d792d66697273742d706f73741027"
        );
        assert_eq!(op.required(), Required::of("alice", Level::Posting));
    }

    #[test]
    fn appbase_form_and_errors() {
        let a = Operation::from_json(json!({"type": "transfer_operation", "value": {"from": "a1b", "to": "b2c", "amount": {"amount": "1000", "precision": 3, "nai": "@@000000021"}, "memo": ""}}), 0).unwrap();
        let c = Operation::from_json(
            json!(["transfer", {"from": "a1b", "to": "b2c", "amount": "1.000 HIVE", "memo": ""}]),
            0,
        )
        .unwrap();
        assert_eq!(a, c);
        let e = Operation::from_json(
            json!(["vote", {"voter": "a", "author": "b", "permlink": "p", "weight": "x"}]),
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string().split(':').take(2).collect::<Vec<_>>(),
            vec!["vote", " weight"]
        );
        let e = Operation::from_json(json!(["vote", {"voter": "a", "author": "b", "permlink": "p", "weight": 1, "extra": 1}]), 0).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e = Operation::from_json(json!(["fill_order", {}]), 0).unwrap_err();
        assert_eq!(e, Error::UnknownOperation("fill_order".into()));
        let e = Operation::from_json(
            json!(["transfer", {"from": "a", "to": "b", "amount": "1.0001 HIVE", "memo": ""}]),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("transfer: amount: "), "{e}");
    }

    #[test]
    fn custom_json_authorities_and_sorting() {
        let op = Operation::from_json(json!(["custom_json", {"required_auths": [], "required_posting_auths": ["zed", "amy"], "id": "x", "json": "{}"}]), 0).unwrap();
        let r = op.required();
        assert_eq!(
            r.accounts,
            vec![
                ("amy".into(), Level::Posting),
                ("zed".into(), Level::Posting)
            ]
        );
        // Another spelling of the same set is the same operation.
        let other = Operation::from_json(json!(["custom_json", {"required_auths": [], "required_posting_auths": ["amy", "zed"], "id": "x", "json": "{}"}]), 0).unwrap();
        assert_eq!(other, op);
        assert_eq!(
            op.to_json().unwrap()[1]["required_posting_auths"],
            json!(["amy", "zed"])
        );
        let bytes = hex::encode(op.to_bytes().unwrap());
        assert!(bytes.starts_with("12000203616d79037a6564"), "{bytes}");
        assert!(Operation::from_json(json!(["custom_json", {"required_auths": ["a", "a"], "required_posting_auths": [], "id": "x", "json": "{}"}]), 0).is_err());
    }

    #[test]
    fn from_text_reads_what_from_json_reads() {
        let vote = Operation::from_json(
            json!(["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": -5}]),
            0,
        )
        .unwrap();
        for text in [
            r#"["vote",{"voter":"alice","author":"bob","permlink":"p","weight":-5}]"#,
            r#"{"type":"vote_operation","value":{"voter":"alice","author":"bob","permlink":"p","weight":-5}}"#,
            // "value" before "type", the bare name, and a wrapper key that is not the operation.
            r#"{"value":{"voter":"alice","author":"bob","permlink":"p","weight":-5},"note":[1],"type":"vote"}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<Operation>(text).unwrap(),
                vote,
                "{text}"
            );
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(Operation::from_json(value, 0).unwrap(), vote, "{text}");
        }
        for bad in [
            r#"["vote_operation",{"voter":"a","author":"b","permlink":"p","weight":1}]"#,
            r#"["vote",{"voter":"a","author":"b","permlink":"p","weight":1},1]"#,
            r#"["vote"]"#,
            r#"{"type":"vote"}"#,
            r#"{"type":"vote","type":"vote","value":{}}"#,
            // A repeated key: a Value keeps the last copy, the text form refuses it.
            r#"["vote",{"voter":"a","voter":"b","author":"b","permlink":"p","weight":1}]"#,
            r#"["fill_order",{}]"#,
            // Fields are an object; serde would take a struct as an array too.
            r#"["vote",["a","b","p",1]]"#,
            r#""vote""#,
        ] {
            assert!(serde_json::from_str::<Operation>(bad).is_err(), "{bad}");
        }
        // list_from_str explains a failure as list_from_json does: op, field.
        let e = Operation::list_from_str(
            r#"[["vote",{"voter":"a","author":"b","permlink":"p","weight":"x"}]]"#,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("vote: weight: "), "{e}");
        let e = Operation::list_from_str(
            r#"[["vote",{"voter":"a","voter":"b","author":"b","permlink":"p","weight":1}]]"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate field `voter`"), "{e}");
        assert_eq!(
            Operation::list_from_str("[1").unwrap_err().kind(),
            "transaction"
        );
        assert_eq!(Operation::list_from_str("[]").unwrap(), vec![]);
    }

    #[test]
    fn pair_id_extension() {
        let op = Operation::from_json(json!(["recurrent_transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": "", "recurrence": 24, "executions": 2, "extensions": [{"type": 1, "value": {"pair_id": 3}}]}]), 0).unwrap();
        let b = hex::encode(op.to_bytes().unwrap());
        assert!(b.ends_with("18000200010103"), "{b}");
        let json = op.to_json().unwrap();
        assert_eq!(json[1]["extensions"], json!([[1, {"pair_id": 3}]]));
    }
}
