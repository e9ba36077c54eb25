//! Every transaction vector generated from @hiveio/dhive must match byte for byte: bytes,
//! digest, id and signatures (dhive's deterministic signing scheme).

use has_crypto::PrivateKey;
use hive_chain::{ChainId, Operation, TimePointSec, Transaction};
use serde_json::Value;

fn vectors() -> Value {
    let v: Value = serde_json::from_str(include_str!("../vectors/transactions.json")).unwrap();
    assert!(v["provenance"]["packages"]["@hiveio/dhive"].is_string());
    v
}

fn tx_from(v: &Value) -> Transaction {
    let ops = Operation::list_from_json(v["operations"].as_array().unwrap()).unwrap();
    Transaction {
        ref_block_num: v["ref_block_num"].as_u64().unwrap() as u16,
        ref_block_prefix: v["ref_block_prefix"].as_u64().unwrap() as u32,
        expiration: v["expiration"]
            .as_str()
            .unwrap()
            .parse::<TimePointSec>()
            .unwrap(),
        operations: ops,
        extensions: Default::default(),
    }
}

#[test]
fn dhive_transactions() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let mut names = std::collections::BTreeSet::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let tx = tx_from(&c["transaction"]);
        for op in &tx.operations {
            names.insert(op.name());
        }
        assert_eq!(
            hex::encode(tx.to_bytes().unwrap()),
            c["serialized_hex"].as_str().unwrap(),
            "bytes: {name}"
        );
        let chain = ChainId::from_hex(c["chain_id"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(tx.digest(&chain).unwrap()),
            c["digest_hex"].as_str().unwrap(),
            "digest: {name}"
        );
        assert_eq!(tx.id().unwrap(), c["id"].as_str().unwrap(), "id: {name}");
        let keys: Vec<PrivateKey> = c["signer_wifs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| PrivateKey::from_wif(w.as_str().unwrap()).unwrap())
            .collect();
        let refs: Vec<&PrivateKey> = keys.iter().collect();
        let signed = tx.clone().sign(&chain, &refs).unwrap();
        let sigs: Vec<String> = signed.signatures.iter().map(|s| s.0.to_hex()).collect();
        let expected: Vec<String> = c["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sigs, expected, "signatures: {name}");
        // The JSON we output reads back to the same transaction.
        let back: hive_chain::SignedTransaction =
            serde_json::from_value(signed.to_json().unwrap()).unwrap();
        assert_eq!(back, signed, "json round trip: {name}");
    }
    // Every operation dhive can serialize is covered.
    assert!(
        names.len() >= 46,
        "covered {} operation types: {names:?}",
        names.len()
    );
}

#[test]
fn pitfalls_follow_hived() {
    for p in vectors()["pitfalls"].as_array().unwrap() {
        let op = Operation::from_json(p["operation"].clone(), 0).unwrap();
        let ours = hex::encode(op.to_bytes().unwrap());
        assert_eq!(
            ours,
            p["expected_serialized_hex"].as_str().unwrap(),
            "{}",
            p["name"]
        );
        assert_ne!(
            ours,
            p["dhive_serialized_hex"].as_str().unwrap(),
            "{} is a real difference",
            p["name"]
        );
    }
}

#[test]
fn operations_from_the_hived_layout() {
    for p in vectors()["hived_layout"].as_array().unwrap() {
        let op = Operation::from_json(p["operation"].clone(), 0).unwrap();
        assert_eq!(
            hex::encode(op.to_bytes().unwrap()),
            p["serialized_hex"].as_str().unwrap(),
            "{}",
            p["name"]
        );
    }
}
