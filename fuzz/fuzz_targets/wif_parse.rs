//! WIF and public key parsing: never panics; whatever parses formats back to the same text.
#![no_main]

use has_crypto::{PrivateKey, PublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PrivateKey::from_wif(&text) {
        assert_eq!(key.to_wif().expose_secret(), text);
    }
    for prefix in ["STM", "TST"] {
        if let Ok(key) = PublicKey::from_str_with_prefix(&text, prefix) {
            assert_eq!(key.to_string_with_prefix(prefix), text);
        }
    }
    if data.len() == 32 {
        if let Ok(key) = PrivateKey::from_bytes(data.try_into().unwrap()) {
            let wif = key.to_wif();
            assert_eq!(PrivateKey::from_wif(wif.expose_secret()).unwrap(), key);
        }
    }
});
