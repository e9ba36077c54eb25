//! has-crypto micro-benchmarks. `cargo xtask bench crypto` runs these and the same operations
//! in Node (crypto-js, hive-js, dhive) and prints the medians side by side.
//!
//! Benchmark ids are shared with `xtask/js/bench_crypto.js`; keep them in sync.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use has_crypto::{MemoChannel, PrivateKey, SharedSecretCache, Signature, cryptojs, memo};
use sha2::{Digest, Sha256};

const AUTH_KEY: &str = "03f63469-5a35-47cb-a6b4-e8c4d3144cf9";
const WIF: &str = "5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw";

/// A 300-byte sign_req payload, the same text the JS bench uses.
fn payload_300() -> String {
    let base = r#"{"key_type":"posting","ops":[["vote",{"voter":"arcange","author":"arcange","permlink":"hello-world-this-is-a-longer-permlink","weight":10000}]],"broadcast":true,"nonce":1690000000001,"pad":""#;
    let mut s = base.to_owned();
    while s.len() < 298 {
        s.push('x');
    }
    s.push_str("\"}");
    s
}

fn messages() -> Vec<String> {
    (0..64)
        .map(|i| format!(r#"{{"login":"arcange","ts":{}}}"#, 1690000000000u64 + i))
        .collect()
}

fn digests() -> Vec<[u8; 32]> {
    (0..64u32)
        .map(|i| Sha256::digest(i.to_le_bytes()).into())
        .collect()
}

fn benches(c: &mut Criterion) {
    let key = PrivateKey::from_wif(WIF).unwrap();
    let server = PrivateKey::from_seed(b"has-server-test-key").unwrap();
    let pt = payload_300();
    let ct = cryptojs::encrypt_with_salt(&pt, AUTH_KEY, &[1, 2, 3, 4, 5, 6, 7, 8]);

    c.bench_function("aes_encrypt_300B", |b| {
        b.iter(|| cryptojs::encrypt_with_salt(black_box(&pt), AUTH_KEY, &[1, 2, 3, 4, 5, 6, 7, 8]))
    });
    c.bench_function("aes_decrypt_300B", |b| {
        b.iter(|| cryptojs::decrypt(black_box(&ct), AUTH_KEY).unwrap())
    });

    let msgs = messages();
    let mut i = 0usize;
    c.bench_function("sign_buffer", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            key.sign_buffer(black_box(msgs[i].as_bytes()))
        })
    });
    let ds = digests();
    let mut j = 0usize;
    c.bench_function("sign_transaction_digest", |b| {
        b.iter(|| {
            j = (j + 1) % ds.len();
            key.sign_digest(black_box(&ds[j]))
        })
    });
    let sig = key.sign_buffer(msgs[0].as_bytes());
    let sig_hex = sig.to_hex();
    c.bench_function("verify_challenge", |b| {
        b.iter(|| {
            let s = Signature::from_hex(black_box(&sig_hex)).unwrap();
            s.verify_buffer(msgs[0].as_bytes(), key.public_key())
                .unwrap()
        })
    });
    c.bench_function("recover_challenge", |b| {
        b.iter(|| sig.recover_buffer(black_box(msgs[0].as_bytes())).unwrap())
    });

    let uuid = "9b0e2dc3-f574-4766-abdd-c429dce11284";
    let text = format!("#{uuid}");
    let channel = MemoChannel::new(&key, server.public_key());
    c.bench_function("memo_encode_cached", |b| {
        b.iter(|| channel.encode_with_nonce(black_box(&text), 1234567890123456789))
    });
    c.bench_function("memo_encode_uncached", |b| {
        b.iter(|| {
            memo::encode_with_nonce(
                &key,
                server.public_key(),
                black_box(&text),
                1234567890123456789,
            )
        })
    });
    let m = channel.encode_with_nonce(&text, 1234567890123456789);
    let cache = SharedSecretCache::default();
    c.bench_function("memo_decode_cached", |b| {
        b.iter(|| cache.decode(&server, black_box(&m)).unwrap())
    });
    c.bench_function("memo_decode_uncached", |b| {
        b.iter(|| memo::decode(&server, black_box(&m)).unwrap())
    });

    c.bench_function("wif_parse", |b| {
        b.iter(|| PrivateKey::from_wif(black_box(WIF)).unwrap())
    });
}

criterion_group!(crypto, benches);
criterion_main!(crypto);
