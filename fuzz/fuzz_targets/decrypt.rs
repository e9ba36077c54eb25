//! CryptoJS decrypt: never panics, whatever decrypts is exactly the encryption of its
//! plaintext under the same salt (so nothing but crypto-js output is ever accepted), and the
//! parse-once path used for trial decryption (`parse` + `Parsed::decrypt`, which turns wrong
//! keys away on the last block) agrees with `decrypt` on every input, and `Parsed::plausible`
//! never misses a passphrase that decrypts.
#![no_main]

use base64::Engine as _;
use has_crypto::cryptojs;
use libfuzzer_sys::fuzz_target;

fn check(ciphertext: &str, passphrase: &str) {
    let parsed = cryptojs::parse(ciphertext).and_then(|p| p.decrypt(passphrase));
    let direct = cryptojs::decrypt(ciphertext, passphrase);
    assert_eq!(
        parsed.as_ref().map(|p| p.expose_secret().to_owned()).ok(),
        direct.as_ref().map(|p| p.expose_secret().to_owned()).ok()
    );
    // Trial decryption never turns the right passphrase away.
    if direct.is_ok() {
        let parsed = cryptojs::parse(ciphertext).expect("decryptable ciphertext parses");
        assert_eq!(parsed.plausible(&["", passphrase]).last(), Some(&1));
    }
    if let Ok(plain) = direct {
        let salt = cryptojs::salt_of(ciphertext).expect("accepted ciphertext has a salt");
        let again = cryptojs::encrypt_with_salt(plain.expose_secret(), passphrase, &salt);
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        assert_eq!(engine.decode(ciphertext).unwrap(), engine.decode(&again).unwrap());
    }
}

fuzz_target!(|data: &[u8]| {
    // Mode 1: arbitrary text as ciphertext.
    if let Some((&mode, rest)) = data.split_first() {
        if mode & 1 == 0 {
            let text = String::from_utf8_lossy(rest);
            let (pass, ct) = text.split_at(text.char_indices().nth(8).map(|(i, _)| i).unwrap_or(text.len()));
            check(ct, pass);
        } else if rest.len() >= 10 {
            // Mode 2: a real ciphertext with one byte flipped at a chosen position.
            let (ctl, body) = rest.split_at(2);
            let pt = String::from_utf8_lossy(body);
            let good = cryptojs::encrypt_with_salt(&pt, "pass", &[7; 8]);
            let mut raw = base64::engine::general_purpose::STANDARD.decode(&good).unwrap();
            let at = usize::from(ctl[0]) * 256 + usize::from(ctl[1]);
            let idx = at % raw.len();
            raw[idx] ^= 1 << (at % 8);
            check(&base64::engine::general_purpose::STANDARD.encode(raw), "pass");
        }
    }
});
