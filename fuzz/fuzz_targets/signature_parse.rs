//! Signature parsing, recovery and verification: never panic; parse→format is the identity;
//! a recovered key always verifies.
#![no_main]

use has_crypto::{PrivateKey, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let digest = [0x42u8; 32];
    if let Ok(sig) = Signature::from_bytes(data) {
        assert_eq!(sig.to_bytes().as_slice(), data);
        if let Ok(key) = sig.recover(&digest) {
            if sig.is_low_s() {
                sig.verify(&digest, &key).unwrap();
            }
        }
        let key = PrivateKey::from_seed(b"fuzz").unwrap();
        let _ = sig.verify(&digest, key.public_key());
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(sig) = Signature::from_hex(&text) {
        assert_eq!(sig.to_hex(), text.to_lowercase());
    }
});
