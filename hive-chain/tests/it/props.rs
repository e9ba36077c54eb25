//! Properties: JSON → operation → JSON → operation is the identity; both JSON forms give
//! the same bytes; a signed transaction's signer is recovered.

use hive_chain::{ChainId, HeadBlock, Operation, TimePointSec, Transaction, arb};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip(op in arb::operation()) {
        let json = op.to_json().unwrap();
        let back = Operation::from_json(json.clone(), 0).unwrap();
        prop_assert_eq!(&back, &op);
        prop_assert_eq!(back.to_bytes().unwrap(), op.to_bytes().unwrap());
        // appbase form {"type": "<name>_operation", "value": {...}} reads the same.
        let appbase = serde_json::json!({"type": format!("{}_operation", op.name()), "value": json[1].clone()});
        prop_assert_eq!(&Operation::from_json(appbase.clone(), 0).unwrap(), &op);
        // Straight from text, both forms (serde_json writes "type" before "value").
        prop_assert_eq!(&serde_json::from_str::<Operation>(&json.to_string()).unwrap(), &op);
        prop_assert_eq!(&serde_json::from_str::<Operation>(&appbase.to_string()).unwrap(), &op);
        let value_first = format!(r#"{{"value":{},"type":"{}"}}"#, json[1], op.name());
        prop_assert_eq!(serde_json::from_str::<Operation>(&value_first).unwrap(), op);
    }

    #[test]
    fn sign_and_recover(ops in proptest::collection::vec(arb::operation(), 1..4), secs in 1u32..3600) {
        let head = HeadBlock { head_block_number: 80_000_000, head_block_id: "04c4b400aabbccddeeff00112233445566778899".into(), time: TimePointSec(1_700_000_000) };
        let tx = Transaction::new(&head, ops, secs).unwrap();
        let key = has_crypto::PrivateKey::from_seed(b"props").unwrap();
        let signed = tx.sign(&ChainId::MAINNET, &[&key]).unwrap();
        prop_assert_eq!(signed.signers(&ChainId::MAINNET).unwrap(), vec![*key.public_key()]);
    }
}
