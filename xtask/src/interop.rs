//! `cargo xtask interop crypto`: our output checked by the JS libraries, and theirs by us.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey, PublicKey, Signature, cryptojs, memo};
use rand::{Rng, RngExt};
use serde_json::{Value, json};

fn random_text(rng: &mut impl Rng, max: usize) -> String {
    const CHARS: &[char] = &[
        'a', 'b', 'c', 'x', 'y', 'z', '0', '9', ' ', '{', '}', '"', ':', ',', '#', '\\', '\n', 'é',
        '爱', '😀', '\u{0}', '\u{7f}', '\u{2028}',
    ];
    let len = rng.random_range(0..=max);
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())])
        .collect()
}

fn uuid_like(rng: &mut impl Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Cases produced by Rust for the JS libraries to check.
fn rust_cases(count: usize) -> Result<Value> {
    let mut rng = rand::rng();
    let (mut aes, mut sb, mut sd, mut memos, mut keys) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..count {
        let pass = if i % 2 == 0 {
            uuid_like(&mut rng)
        } else {
            random_text(&mut rng, 40)
        };
        let pt = random_text(&mut rng, 300);
        aes.push(json!({"passphrase": pass, "plaintext": pt, "ciphertext": cryptojs::encrypt(&pt, &pass)}));

        let key = PrivateKey::generate();
        let wif = key.to_wif().expose_secret().to_owned();
        let public = key.public_key().to_string();
        let msg = random_text(&mut rng, 200);
        sb.push(json!({"wif": wif, "public_key": public, "message": msg,
            "signature": key.sign_buffer(msg.as_bytes()).to_hex()}));
        let mut digest = [0u8; 32];
        rng.fill_bytes(&mut digest);
        sd.push(
            json!({"wif": wif, "public_key": public, "digest_hex": hex::encode(digest),
            "signature": key.sign_digest(&digest).to_hex()}),
        );

        let other = PrivateKey::generate();
        let text = format!("#{}", random_text(&mut rng, 120));
        // hive-js parses the nonce as a signed 64-bit integer: stay below 2^63.
        let nonce: u64 = rng.random_range(1..(1u64 << 63));
        memos.push(
            json!({"sender_wif": wif, "recipient_wif": other.to_wif().expose_secret(),
            "recipient_public": other.public_key().to_string(), "text": text,
            "nonce": nonce.to_string(),
            "memo": memo::encode_with_nonce(&key, other.public_key(), &text, nonce)}),
        );

        let role = KeyRole::ALL[i % 4];
        let login = PrivateKey::from_login(&format!("acct{i}"), &uuid_like(&mut rng), role)
            .context("login key")?;
        keys.push(json!({"wif": login.to_wif().expose_secret(),
            "public_key": login.public_key().to_string(),
            "public_key_tst": login.public_key().to_string_with_prefix(has_crypto::TESTNET_PREFIX)}));
    }
    Ok(json!({"aes": aes, "sign_buffer": sb, "sign_digest": sd, "memo": memos, "keys": keys}))
}

fn s<'a>(v: &'a Value, k: &str) -> Result<&'a str> {
    v.get(k)
        .and_then(Value::as_str)
        .with_context(|| format!("missing string field {k}"))
}

/// Checks one JS-produced case; Ok(false) = mismatch.
fn check_js_case(kind: &str, c: &Value) -> Result<bool> {
    Ok(match kind {
        "aes" => {
            cryptojs::decrypt(s(c, "ciphertext")?, s(c, "passphrase")?)?.expose_secret()
                == s(c, "plaintext")?
        }
        "sign_buffer" => {
            let key = PrivateKey::from_wif(s(c, "wif")?)?;
            let msg = s(c, "message")?.as_bytes();
            let sig = Signature::from_hex(s(c, "signature")?)?;
            let public: PublicKey = s(c, "public_key")?.parse()?;
            sig.verify_buffer(msg, &public).is_ok()
                && sig.recover_buffer(msg)? == public
                && key.sign_buffer(msg) == sig
        }
        "sign_digest" => {
            let key = PrivateKey::from_wif(s(c, "wif")?)?;
            let digest: [u8; 32] = hex::decode(s(c, "digest_hex")?)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("digest length"))?;
            let sig = Signature::from_hex(s(c, "signature")?)?;
            let public: PublicKey = s(c, "public_key")?.parse()?;
            sig.verify(&digest, &public).is_ok()
                && sig.recover(&digest)? == public
                && key.sign_digest(&digest) == sig
        }
        "memo" => {
            let text = s(c, "text")?;
            let by_recipient = memo::decode(
                &PrivateKey::from_wif(s(c, "recipient_wif")?)?,
                s(c, "memo")?,
            )?;
            let by_sender =
                memo::decode(&PrivateKey::from_wif(s(c, "sender_wif")?)?, s(c, "memo")?)?;
            by_recipient.text.expose_secret() == text && by_sender.text.expose_secret() == text
        }
        "keys" => {
            let key = PrivateKey::from_wif(s(c, "wif")?)?;
            key.public_key().to_string() == s(c, "public_key")?
                && key.public_key().to_string_with_prefix("TST") == s(c, "public_key_tst")?
                && key.to_wif().expose_secret() == s(c, "wif")?
        }
        other => bail!("unknown case kind {other}"),
    })
}

pub fn crypto(count: usize) -> Result<()> {
    let dir = crate::js::scratch();
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("interop_crypto_in.json");
    let output = dir.join("interop_crypto_out.json");
    std::fs::write(&input, serde_json::to_vec(&rust_cases(count)?)?)?;
    let in_s = input.to_string_lossy().into_owned();
    let out_s = output.to_string_lossy().into_owned();
    let count_s = count.to_string();
    crate::js::node("interop_crypto.js", &[&in_s, &out_s, &count_s])?;
    let result: Value = serde_json::from_slice(&std::fs::read(&output)?)?;

    let mut table: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    if let Some(checked) = result.get("checked").and_then(Value::as_object) {
        for (k, v) in checked {
            table.insert(k.clone(), (v.as_u64().unwrap_or(0), 0));
        }
    }
    let js_mismatches = result
        .get("mismatches")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in &js_mismatches {
        let kind = m
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        table.entry(kind).or_default().1 += 1;
    }
    let mut rust_failures = vec![];
    if let Some(js) = result.get("js").and_then(Value::as_object) {
        for (kind, cases) in js {
            let label = format!("{kind}_js_to_rust");
            for c in cases.as_array().into_iter().flatten() {
                let entry = table.entry(label.clone()).or_default();
                entry.0 += 1;
                match check_js_case(kind, c) {
                    Ok(true) => {}
                    Ok(false) => {
                        entry.1 += 1;
                        rust_failures.push(format!("{label}: mismatch {c}"));
                    }
                    Err(e) => {
                        entry.1 += 1;
                        rust_failures.push(format!("{label}: {e:#} {c}"));
                    }
                }
            }
        }
    }
    println!("{:<32} {:>8} {:>10}", "check", "cases", "mismatches");
    let mut total = (0, 0);
    for (k, (n, bad)) in &table {
        println!("{k:<32} {n:>8} {bad:>10}");
        total.0 += n;
        total.1 += bad;
    }
    println!("{:<32} {:>8} {:>10}", "total", total.0, total.1);
    for m in js_mismatches.iter().take(5) {
        eprintln!("JS mismatch: {m}");
    }
    for f in rust_failures.iter().take(5) {
        eprintln!("Rust mismatch: {f}");
    }
    if total.1 > 0 {
        bail!(
            "interop crypto: {} mismatches out of {} checks",
            total.1,
            total.0
        );
    }
    Ok(())
}

/// `cargo xtask interop chain`: random valid operations (the proptest strategies of
/// hive-chain) serialized by Rust and by dhive in the same run; transactions' digests,
/// ids and signatures too.
pub fn chain(count: usize) -> Result<()> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::default();
    let strategy = hive_chain::arb::operation_json();
    let mut ops = vec![];
    let mut txs = vec![];
    let key = PrivateKey::generate();
    for i in 0..count {
        let json = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        let op = hive_chain::Operation::from_json(json.clone(), 0)?;
        ops.push(serde_json::json!({"op": op.to_json()?, "rust_hex": hex::encode(op.to_bytes()?)}));
        if i % 10 == 0 {
            let tx = hive_chain::Transaction {
                ref_block_num: (i % 65536) as u16,
                ref_block_prefix: (i as u32).wrapping_mul(2654435761),
                expiration: hive_chain::TimePointSec(1_700_000_000 + i as u32),
                operations: vec![op],
                extensions: Default::default(),
            };
            let chain = hive_chain::ChainId::MAINNET;
            let signed = tx.clone().sign(&chain, &[&key])?;
            let mut tx_json = serde_json::to_value(&tx)?;
            if let Some(o) = tx_json.as_object_mut() {
                o.insert("extensions".into(), serde_json::json!([]));
            }
            txs.push(serde_json::json!({
                "tx": tx_json, "chain_id": chain.to_hex(), "wif": key.to_wif().expose_secret(),
                "rust_digest": hex::encode(tx.digest(&chain)?), "rust_id": tx.id()?,
                "rust_signature": signed.signatures.first().map(|s| s.0.to_hex()),
            }));
        }
    }
    let dir = crate::js::scratch();
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("interop_chain_in.json");
    let output = dir.join("interop_chain_out.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&serde_json::json!({"ops": ops, "txs": txs}))?,
    )?;
    crate::js::node(
        "interop_chain.js",
        &[&input.to_string_lossy(), &output.to_string_lossy()],
    )?;
    let result: Value = serde_json::from_slice(&std::fs::read(&output)?)?;
    let checked = result
        .get("checked")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mismatches = result
        .get("mismatches")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut bad: BTreeMap<String, u64> = BTreeMap::new();
    for m in &mismatches {
        *bad.entry(
            m.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        )
        .or_default() += 1;
    }
    println!("{:<36} {:>8} {:>10}", "check", "cases", "mismatches");
    let mut total = (0, 0);
    for (k, n) in &checked {
        let n = n.as_u64().unwrap_or(0);
        let b = bad.get(k).copied().unwrap_or(0);
        println!("{k:<36} {n:>8} {b:>10}");
        total.0 += n;
        total.1 += b;
    }
    println!("{:<36} {:>8} {:>10}", "total", total.0, total.1);
    for m in mismatches.iter().take(5) {
        eprintln!("mismatch: {m}");
    }
    if total.1 > 0 {
        bail!(
            "interop chain: {} mismatches out of {} checks",
            total.1,
            total.0
        );
    }
    Ok(())
}
