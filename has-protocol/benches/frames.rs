//! Parse + validate typical frames (target ≤ 20 µs each), and the same with decryption.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, KeyType, RequestId, UnixMillis, frame};

fn benches(c: &mut Criterion) {
    has_protocol::validate::init().unwrap();
    let key = AuthKey::new("03f63469-5a35-47cb-a6b4-e8c4d3144cf9");
    let auth = AuthReqData {
        app: AppInfo {
            name: "myapp".into(),
            description: Some("My app".into()),
            icon: None,
            pubkey: None,
        },
        challenge: Some(ChallengeSpec {
            key_type: KeyType::Posting,
            challenge: "{\"login\":\"arcange\",\"ts\":1690000000000}".into(),
        }),
        token: None,
    };
    let auth_frame = frame::encode(&RelayToPksa::AuthReq(RelayedAuthReq {
        account: "arcange".parse().unwrap(),
        data: Encrypted::encrypt(&auth, &key),
        uuid: RequestId::generate(),
        expire: UnixMillis(1690000060000),
        auth_key: Some(Encrypted::encrypt(
            &key,
            &has_protocol::AuthReqSecret::new("secret"),
        )),
        token: None,
    }))
    .unwrap();
    let sign = SignReqData {
        key_type: KeyType::Posting,
        ops: vec![
            serde_json::json!(["vote", {"voter": "arcange", "author": "arcange", "permlink": "hello", "weight": 10000}]),
        ],
        broadcast: true,
        nonce: Some(has_protocol::Nonce(1690000000001)),
    };
    let sign_frame = frame::encode(&RelayToPksa::SignReq(RelayedSignReq {
        account: "arcange".parse().unwrap(),
        data: Encrypted::encrypt(&sign, &key),
        uuid: RequestId::generate(),
        expire: UnixMillis(1690000060000),
        token: None,
    }))
    .unwrap();

    c.bench_function("parse_validate_auth_req", |b| {
        b.iter(|| frame::parse::<RelayToPksa>(black_box(&auth_frame)).unwrap())
    });
    c.bench_function("parse_validate_sign_req", |b| {
        b.iter(|| frame::parse::<RelayToPksa>(black_box(&sign_frame)).unwrap())
    });
    c.bench_function("parse_validate_decrypt_sign_req", |b| {
        b.iter(|| {
            let RelayToPksa::SignReq(r) =
                frame::parse::<RelayToPksa>(black_box(&sign_frame)).unwrap()
            else {
                unreachable!()
            };
            r.data.decrypt(&key).unwrap()
        })
    });
    c.bench_function("parse_validate_at_relay_sign_req", |b| {
        b.iter(|| frame::parse_to_relay(black_box(&sign_frame)).unwrap())
    });
}

criterion_group!(frames, benches);
criterion_main!(frames);
