//! Memo decoding: never panics on any text; encode→decode is the identity for any keys, text
//! and nonce, from either side.
#![no_main]

use has_crypto::{PrivateKey, memo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recipient = PrivateKey::from_seed(b"fuzz-recipient").unwrap();
    let text = String::from_utf8_lossy(data);
    let _ = memo::decode(&recipient, &text);
    let _ = memo::EncryptedMemo::parse(&text);

    if data.len() >= 9 {
        let (seed, body) = data.split_at(1);
        let nonce = u64::from_le_bytes(body[..8].try_into().unwrap());
        let sender = PrivateKey::from_seed(seed).unwrap();
        let msg = format!("#{}", String::from_utf8_lossy(&body[8..]));
        let m = memo::encode_with_nonce(&sender, recipient.public_key(), &msg, nonce);
        assert_eq!(memo::decode(&recipient, &m).unwrap().text.expose_secret(), msg);
        assert_eq!(memo::decode(&sender, &m).unwrap().text.expose_secret(), msg);
    }
});
