//! Parse + serialize + sign a 3-operation transaction (the sign_req hot path). Ids shared
//! with xtask/js/bench_chain.js; `cargo xtask bench chain` prints both. Both sides start from
//! the same thing: `tx3_parse_*` from the JSON text of the ops (Rust `list_from_str`, dhive
//! `JSON.parse`), `tx3_value_serialize` from ops already parsed (Rust `serde_json::Value`,
//! dhive plain objects: what the service and a JS PKSA hold after reading a sign_req).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use has_crypto::PrivateKey;
use hive_chain::{ChainId, Operation, TimePointSec, Transaction};
use serde_json::json;

fn ops() -> Vec<serde_json::Value> {
    vec![
        json!(["vote", {"voter": "alice", "author": "bob", "permlink": "my-first-post", "weight": 10000}]),
        json!(["custom_json", {"required_auths": [], "required_posting_auths": ["alice"], "id": "follow", "json": "[\"follow\",{\"follower\":\"alice\",\"following\":\"bob\",\"what\":[\"blog\"]}]"}]),
        json!(["comment", {"parent_author": "bob", "parent_permlink": "my-first-post", "author": "alice", "permlink": "re-my-first-post", "title": "", "body": "Nice post!", "json_metadata": "{\"app\":\"bench\"}"}]),
    ]
}

fn benches(c: &mut Criterion) {
    let key = PrivateKey::from_seed(b"bench").unwrap();
    let json = ops();
    let text = serde_json::to_string(&json).unwrap();
    let build = |ops: Vec<Operation>| Transaction {
        ref_block_num: 34567,
        ref_block_prefix: 3451789012,
        expiration: TimePointSec(1_700_000_060),
        operations: ops,
        extensions: Default::default(),
    };
    c.bench_function("tx3_parse_serialize", |b| {
        b.iter(|| {
            let tx = build(Operation::list_from_str(black_box(&text)).unwrap());
            tx.to_bytes().unwrap()
        })
    });
    c.bench_function("tx3_value_serialize", |b| {
        b.iter(|| {
            let tx = build(Operation::list_from_json(black_box(&json)).unwrap());
            tx.to_bytes().unwrap()
        })
    });
    let mut n = 0u32;
    c.bench_function("tx3_parse_serialize_sign", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut tx = build(Operation::list_from_str(black_box(&text)).unwrap());
            tx.expiration = TimePointSec(1_700_000_000 + n % 64);
            tx.sign(&ChainId::MAINNET, &[&key]).unwrap()
        })
    });
}

criterion_group!(chain, benches);
criterion_main!(chain);
