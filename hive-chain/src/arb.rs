//! proptest strategies for operations (feature `arbitrary`): used by the property tests and
//! by `cargo xtask interop chain`, which serializes samples with dhive and compares bytes.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::ops::Operation;

/// A valid Hive account name.
pub fn account() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{1,12}[a-z0-9]"
}

/// Free text (printable, with some unicode).
pub fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('z'),
            Just(' '),
            Just('é'),
            Just('爱'),
            Just('"'),
            Just('\\'),
            Just('\n'),
            Just('0')
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn amount(symbol: &'static str) -> impl Strategy<Value = String> {
    let precision = if symbol == "VESTS" { 6 } else { 3 };
    (0u64..1_000_000_000_000).prop_map(move |units| {
        let scale = 10u64.pow(precision);
        format!(
            "{}.{:0width$} {symbol}",
            units / scale,
            units % scale,
            width = precision as usize
        )
    })
}

fn liquid() -> impl Strategy<Value = String> {
    prop_oneof![amount("HIVE"), amount("HBD")]
}

fn time() -> impl Strategy<Value = String> {
    (0u32..4_000_000_000).prop_map(|s| crate::types::TimePointSec(s).to_string())
}

/// Condenser JSON of a random valid operation (a representative subset of every type).
pub fn operation_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        (account(), account(), text(40), -10000i16..=10000).prop_map(|(v, a, p, w)| json!(["vote", {"voter": v, "author": a, "permlink": if p.is_empty() { "p".into() } else { p }, "weight": w}])),
        (account(), account(), text(20), text(200), text(40)).prop_map(|(pa, a, t, b, j)| json!(["comment", {"parent_author": "", "parent_permlink": pa, "author": a, "permlink": "post", "title": t, "body": b, "json_metadata": j}])),
        (account(), account(), liquid(), text(60)).prop_map(|(f, t, a, m)| json!(["transfer", {"from": f, "to": t, "amount": a, "memo": m}])),
        (account(), account(), amount("HIVE")).prop_map(|(f, t, a)| json!(["transfer_to_vesting", {"from": f, "to": t, "amount": a}])),
        (account(), amount("VESTS")).prop_map(|(a, v)| json!(["withdraw_vesting", {"account": a, "vesting_shares": v}])),
        (account(), account(), amount("VESTS")).prop_map(|(a, b, v)| json!(["delegate_vesting_shares", {"delegator": a, "delegatee": b, "vesting_shares": v}])),
        (proptest::collection::btree_set(account(), 0..3), proptest::collection::btree_set(account(), 1..3), "[a-z-]{1,20}", text(80)).prop_map(|(ra, rp, id, j)| json!(["custom_json", {"required_auths": ra, "required_posting_auths": rp, "id": id, "json": j}])),
        (account(), amount("HIVE"), amount("HBD"), amount("VESTS")).prop_map(|(a, h, d, v)| json!(["claim_reward_balance", {"account": a, "reward_hive": h, "reward_hbd": d, "reward_vests": v}])),
        (account(), amount("HBD"), 0u16..=10000, any::<bool>(), proptest::collection::btree_map(account(), 1u16..5000, 0..4)).prop_map(|(a, max, pct, votes, bens)| {
            let b: Vec<Value> = bens.into_iter().map(|(acc, w)| json!({"account": acc, "weight": w})).collect();
            let ext = if b.is_empty() { json!([]) } else { json!([[0, {"beneficiaries": b}]]) };
            json!(["comment_options", {"author": a, "permlink": "post", "max_accepted_payout": max, "percent_hbd": pct, "allow_votes": votes, "allow_curation_rewards": !votes, "extensions": ext}])
        }),
        (account(), text(80)).prop_map(|(a, j)| json!(["account_update2", {"account": a, "json_metadata": "", "posting_json_metadata": j, "extensions": []}])),
        (account(), proptest::collection::btree_set(0i64..100_000, 1..5), any::<bool>()).prop_map(|(v, ids, ap)| json!(["update_proposal_votes", {"voter": v, "proposal_ids": ids, "approve": ap, "extensions": []}])),
        (account(), account(), liquid(), text(30), 24u16..1000, 2u16..100).prop_map(|(f, t, a, m, r, e)| json!(["recurrent_transfer", {"from": f, "to": t, "amount": a, "memo": m, "recurrence": r, "executions": e, "extensions": []}])),
        (account(), any::<u32>(), liquid(), liquid(), any::<bool>(), time()).prop_map(|(o, id, s, r, f, e)| json!(["limit_order_create", {"owner": o, "orderid": id, "amount_to_sell": s, "min_to_receive": r, "fill_or_kill": f, "expiration": e}])),
        (account(), any::<u32>(), amount("HBD")).prop_map(|(o, id, a)| json!(["convert", {"owner": o, "requestid": id, "amount": a}])),
        (account(), account(), any::<bool>()).prop_map(|(a, w, ap)| json!(["account_witness_vote", {"account": a, "witness": w, "approve": ap}])),
        (account(), account(), 0u16..=10000, any::<bool>()).prop_map(|(f, t, p, av)| json!(["set_withdraw_vesting_route", {"from_account": f, "to_account": t, "percent": p, "auto_vest": av}])),
        (account(), account(), liquid(), text(30)).prop_map(|(f, t, a, m)| json!(["transfer_to_savings", {"from": f, "to": t, "amount": a, "memo": m}])),
        (account(), account(), account(), account(), any::<u32>(), any::<bool>()).prop_map(|(f, t, ag, w, id, ap)| json!(["escrow_approve", {"from": f, "to": t, "agent": ag, "who": w, "escrow_id": id, "approve": ap}])),
        (account(), amount("HBD"), amount("HIVE")).prop_map(|(p, b, q)| json!(["feed_publish", {"publisher": p, "exchange_rate": {"base": b, "quote": q}}])),
        (account(), account(), time(), time(), amount("HBD"), text(40)).prop_map(|(c, r, s, e, d, subj)| json!(["create_proposal", {"creator": c, "receiver": r, "start_date": s, "end_date": e, "daily_pay": d, "subject": subj, "permlink": "p", "extensions": []}])),
    ]
}

/// A random valid operation.
pub fn operation() -> impl Strategy<Value = Operation> {
    operation_json().prop_filter_map("parses", |v| Operation::from_json(v, 0).ok())
}
