//! `cargo xtask bench crypto`: criterion medians next to Node medians of the same operations.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::js;

/// Reads criterion's median estimate (ns) for a benchmark id.
fn criterion_median(id: &str) -> Result<f64> {
    let path = js::root()
        .join("target")
        .join("criterion")
        .join(id)
        .join("new")
        .join("estimates.json");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    v.pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .with_context(|| format!("no median in {}", path.display()))
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// (id, target in ns for the Rust median, if the issue sets one)
const CRYPTO: &[(&str, Option<f64>)] = &[
    ("aes_encrypt_300B", None),
    ("aes_decrypt_300B", Some(5_000.0)),
    ("sign_buffer", Some(150_000.0)),
    ("sign_transaction_digest", None),
    ("verify_challenge", None),
    ("recover_challenge", None),
    ("memo_encode_cached", Some(10_000.0)),
    ("memo_encode_uncached", None),
    ("memo_decode_cached", None),
    ("memo_decode_uncached", None),
    ("wif_parse", None),
];

pub fn crypto() -> Result<()> {
    compare("has-crypto", "crypto", "bench_crypto.js", CRYPTO)
}

/// (id, target) of the chain benches: ≥ 10× dhive.
const CHAIN: &[(&str, Option<f64>)] = &[
    ("tx3_parse_serialize", None),
    ("tx3_value_serialize", None),
    ("tx3_parse_serialize_sign", None),
];

pub fn chain() -> Result<()> {
    compare("hive-chain", "chain", "bench_chain.js", CHAIN)
}

fn compare(krate: &str, bench: &str, script: &str, ids: &[(&str, Option<f64>)]) -> Result<()> {
    crate::sh(
        "cargo",
        &[
            "bench",
            "-p",
            krate,
            "--bench",
            bench,
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "3",
        ],
        &[],
    )?;
    let js_out = js::node(script, &["1500"])?;
    let js_medians: Value =
        serde_json::from_str(js_out.trim()).context("parsing JS bench output")?;
    println!(
        "{:<26} {:>12} {:>12} {:>10} {:>12}  ok",
        "operation", "rust median", "js median", "js/rust", "target"
    );
    let mut rows = vec![];
    let mut all_ok = true;
    for (id, target) in ids {
        let rust = criterion_median(id)?;
        let jsv = js_medians.get(*id).and_then(Value::as_f64);
        let ratio = jsv.map(|j| j / rust);
        let ok_ratio = ratio.map(|r| r >= 10.0).unwrap_or(true);
        let ok_target = target.map(|t| rust <= t).unwrap_or(true);
        all_ok &= ok_ratio && ok_target;
        println!(
            "{:<26} {:>12} {:>12} {:>10} {:>12}  {}",
            id,
            fmt_ns(rust),
            jsv.map(fmt_ns).unwrap_or_else(|| "-".into()),
            ratio
                .map(|r| format!("{r:.1}x"))
                .unwrap_or_else(|| "-".into()),
            target
                .map(|t| format!("<= {}", fmt_ns(t)))
                .unwrap_or_else(|| "-".into()),
            if ok_ratio && ok_target { "yes" } else { "NO" }
        );
        rows.push(json!({"id": id, "rust_median_ns": rust, "js_median_ns": jsv, "ratio": ratio}));
    }
    println!(
        "{}",
        json!({"bench": bench, "rows": rows, "all_targets_met": all_ok})
    );
    Ok(())
}
