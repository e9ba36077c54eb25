//! Round-trip properties (proptest).

use has_crypto::{PrivateKey, Signature, cryptojs, memo};
use proptest::prelude::*;

fn key_strategy() -> impl Strategy<Value = PrivateKey> {
    any::<[u8; 32]>().prop_filter_map("valid scalar", |b| PrivateKey::from_bytes(&b).ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn decrypt_inverts_encrypt(pt in ".{0,400}", pass in ".{0,64}", salt in any::<[u8; 8]>()) {
        let ct = cryptojs::encrypt_with_salt(&pt, &pass, &salt);
        prop_assert!(ct.starts_with("U2FsdGVkX1"));
        let back = cryptojs::decrypt(&ct, &pass).unwrap();
        prop_assert_eq!(back.expose_secret(), pt.as_str());
    }

    #[test]
    fn memo_decode_inverts_encode(a in key_strategy(), b in key_strategy(), body in ".{0,200}", nonce in any::<u64>()) {
        let text = format!("#{body}");
        let m = memo::encode_with_nonce(&a, b.public_key(), &text, nonce);
        let by_b = memo::decode(&b, &m).unwrap();
        let by_a = memo::decode(&a, &m).unwrap();
        prop_assert_eq!(by_b.text.expose_secret(), text.as_str());
        prop_assert_eq!(by_a.text.expose_secret(), text.as_str());
    }

    #[test]
    fn sign_then_recover(k in key_strategy(), msg in proptest::collection::vec(any::<u8>(), 0..256), digest in any::<[u8; 32]>()) {
        let sig = k.sign_buffer(&msg);
        prop_assert_eq!(sig.recover_buffer(&msg).unwrap(), *k.public_key());
        prop_assert!(sig.verify_buffer(&msg, k.public_key()).is_ok());
        let tx = k.sign_digest(&digest);
        prop_assert_eq!(tx.recover(&digest).unwrap(), *k.public_key());
        prop_assert_eq!(Signature::from_hex(&tx.to_hex()).unwrap(), tx);
    }

    #[test]
    fn wif_format_parse(k in key_strategy()) {
        let wif = k.to_wif();
        prop_assert_eq!(wif.len(), 51);
        let back = PrivateKey::from_wif(wif.expose_secret()).unwrap();
        let again = back.to_wif();
        prop_assert_eq!(again.expose_secret(), wif.expose_secret());
        let public = k.public_key().to_string();
        prop_assert_eq!(public.parse::<has_crypto::PublicKey>().unwrap().to_string(), public);
    }
}
