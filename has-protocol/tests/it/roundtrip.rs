//! parse ∘ encode = id for generated frames, and decrypt ∘ encrypt = id for payloads.

use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, KeyType, RequestId, frame};
use proptest::prelude::*;

fn account() -> impl Strategy<Value = has_protocol::AccountName> {
    "[a-z][a-z0-9-]{1,12}[a-z0-9]".prop_map(|s| s.parse().unwrap())
}

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![
        Just(KeyType::Memo),
        Just(KeyType::Posting),
        Just(KeyType::Active)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sign_req_round_trip(acct in account(), kt in key_type(), weight in -10000i64..=10000, nonce in any::<u32>(), broadcast in any::<bool>(), token in proptest::option::of("[a-f0-9-]{1,36}")) {
        let key = AuthKey::generate();
        let data = SignReqData {
            key_type: kt,
            ops: vec![serde_json::json!(["vote", {"voter": acct.as_str(), "author": "bob", "permlink": "p", "weight": weight}])],
            broadcast,
            nonce: Some(has_protocol::Nonce(u64::from(nonce))),
        };
        let f = AppToRelay::SignReq(SignReq { account: acct, data: Encrypted::encrypt(&data, &key), token });
        let text = frame::encode(&f).unwrap();
        let back: AppToRelay = frame::parse(&text).unwrap();
        prop_assert_eq!(&back, &f);
        let AppToRelay::SignReq(s) = back else { unreachable!() };
        prop_assert_eq!(s.data.decrypt(&key).unwrap(), data);
    }

    #[test]
    fn challenge_reply_round_trip(challenge in ".{1,200}", pubkey in "STM[1-9A-Za-z]{50}", pok in proptest::option::of("#[1-9A-Za-z]{20,60}")) {
        let key = AuthKey::generate();
        let data = ChallengeAckData { pubkey, challenge };
        let uuid = RequestId::generate();
        let f = PksaToRelay::ChallengeAck(ChallengeAck { uuid, data: Encrypted::encrypt(&data, &key), pok });
        let text = frame::encode(&f).unwrap();
        let parsed = match frame::parse_to_relay(&text).unwrap() {
            frame::ToRelay::Pksa(p) => p,
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(&parsed, &f);
        let app = parsed.into_app_reply().unwrap();
        let text = frame::encode(&app).unwrap();
        prop_assert!(!text.contains("\"pok\""));
        let RelayToApp::ChallengeAck(a) = frame::parse::<RelayToApp>(&text).unwrap() else { unreachable!() };
        prop_assert_eq!(a.data.decrypt(&key).unwrap(), data);
    }
}

#[test]
fn wrong_key_is_decrypt_error_right_key_bad_shape_is_invalid() {
    let key = AuthKey::generate();
    let other = AuthKey::generate();
    let data = Encrypted::<SignReqData>::encrypt(
        &SignReqData {
            key_type: KeyType::Posting,
            ops: vec![serde_json::json!(["vote", {}])],
            broadcast: true,
            nonce: None,
        },
        &key,
    );
    assert_eq!(
        data.decrypt(&other).unwrap_err(),
        has_protocol::PayloadError::Decrypt
    );
    let wrong_shape = Encrypted::<SignReqData>::from_ciphertext(has_crypto::cryptojs::encrypt(
        r#"{"ops":[]}"#,
        key.expose_secret(),
    ));
    assert!(matches!(
        wrong_shape.decrypt(&key).unwrap_err(),
        has_protocol::PayloadError::Invalid(_)
    ));
}

#[test]
fn spec_vectors_decrypt() {
    let key = AuthKey::new("03f63469-5a35-47cb-a6b4-e8c4d3144cf9");
    let d = Encrypted::<AuthReqData>::from_ciphertext("U2FsdGVkX18BAgMEBQYHCDvftjHluU7Q6gqbBOS5TwfmPcPA8U6YRfywyyzpK2WmQAqzNxnpB+y+Ra2ZjM1VOxYfokvyA/uaOMIwQsDhLdg78Fwf4QwQBi6stA00AU9HXE2txas54HswFgYHNdONNmhrcoQzikt/a6W2FqNTlSTaU4zK3sXkSnMT5JA963qPnh4br+2l+6Lk9qJwK/uiww==").decrypt(&key).unwrap();
    assert_eq!(d.app.name, "myapp");
    assert_eq!(d.challenge.unwrap().key_type, KeyType::Posting);
    let secret = has_protocol::AuthReqSecret::new("A.v3ry-$tr0nG/And>$3cUr3.$3Cr3t-K3Y");
    let k = Encrypted::<AuthKey>::from_ciphertext(
        "U2FsdGVkX18REhMUFRYXGNngkWDmSYWSm5ZLtQHv13lbTIHovk/5sV9cTEgryvZoz0ZgFU9j8wDThp/MrnuA0w==",
    )
    .decrypt(&secret)
    .unwrap();
    assert_eq!(k, key);
    let n = Encrypted::<NackPayload>::from_ciphertext(
        "U2FsdGVkX18xMjM0NTY3OA/DAxAE7MB6uXRedxeKlGybIwCC80GFkf3wxWdp90c8QwrsvTrL3r5fy4P+nbFE+Q==",
    )
    .decrypt(&key)
    .unwrap();
    assert_eq!(n.0.as_str(), "9b0e2dc3-f574-4766-abdd-c429dce11284");
}
