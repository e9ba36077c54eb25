//! Operations from arbitrary JSON: parsing and serializing never panic, and whatever parses
//! is a fixed point: JSON → op → JSON → op gives the same op and the same bytes; reading the
//! text directly agrees with reading it through a `Value`.
#![no_main]

use hive_chain::{Operation, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let streamed = serde_json::from_slice::<Operation>(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        assert!(
            streamed.is_err(),
            "text that is not JSON parsed as an operation"
        );
        return;
    };
    // Reading the text directly accepts nothing that the Value path refuses, and reads the
    // same operation (it may refuse more: a key repeated inside an operation).
    if let Ok(direct) = &streamed {
        let via_value = Operation::from_json(value.clone(), 0).expect("the Value path agrees");
        assert_eq!(&via_value, direct);
    }
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
