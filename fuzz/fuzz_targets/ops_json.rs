//! Operations from arbitrary JSON: parsing and serializing never panic, and whatever parses
//! is a fixed point: JSON → op → JSON → op gives the same op and the same bytes.
#![no_main]

use hive_chain::{Operation, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(op) = Operation::from_json(value.clone(), 0) {
        let bytes = op.to_bytes().expect("a parsed operation serializes");
        let json = op.to_json().expect("and has a JSON form");
        let again = Operation::from_json(json, 0).expect("its JSON parses");
        assert_eq!(again, op);
        assert_eq!(again.to_bytes().unwrap(), bytes);
        let _ = op.required();
    }
    if let Ok(tx) = serde_json::from_value::<Transaction>(value) {
        let _ = tx.to_bytes();
        let _ = tx.id();
        let _ = tx.required();
    }
});
