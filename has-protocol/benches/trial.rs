//! What a stranger's request costs a PKSA: trial decryption of a ciphertext no session key
//! decrypts, over an account's session keys. The baseline is the plain way (decode and fully
//! decrypt per key); the prepared way decodes once and tries each key on the last block; the
//! batched way derives eight keys at once (`Prepared::find`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use has_protocol::payloads::SignReqData;
use has_protocol::{AuthKey, Encrypted};

fn benches(c: &mut Criterion) {
    let keys: Vec<AuthKey> = (0..10_000).map(|_| AuthKey::generate()).collect();
    // A 300 KB ciphertext (the size that cost 290 ms over 1,000 sessions).
    let stranger = Encrypted::<SignReqData>::from_ciphertext(has_crypto::cryptojs::encrypt(
        &"x".repeat(300 * 1024),
        "nobody's key",
    ));
    let mut g = c.benchmark_group("stranger_300kb");
    g.sample_size(10);
    g.bench_function("plain_1000_sessions", |b| {
        b.iter(|| {
            for k in keys.iter().take(1000) {
                black_box(stranger.decrypt(k).is_ok());
            }
        })
    });
    for n in [1_000usize, 10_000] {
        g.bench_function(format!("prepared_{n}_sessions"), |b| {
            b.iter(|| {
                let p = stranger.prepare().unwrap();
                for k in keys.iter().take(n) {
                    black_box(p.decrypt(k).is_ok());
                }
            })
        });
        g.bench_function(format!("batched_{n}_sessions"), |b| {
            b.iter(|| {
                let p = stranger.prepare().unwrap();
                assert!(black_box(p.find(&keys[..n])).is_none());
            })
        });
    }
    g.finish();
}

criterion_group!(trial, benches);
criterion_main!(trial);
