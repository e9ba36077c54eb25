//! A HAS round trip with nothing but has-crypto: an app encrypts a challenge request with its
//! auth_key, the PKSA decrypts it, signs the challenge exactly as hive-js would, proves key
//! possession to the relay with a POK, and the app verifies the signature.
//!
//! Run with `cargo run -p has-crypto --example has_roundtrip`.

use has_crypto::{KeyRole, PrivateKey, SharedSecretCache, Signature, cryptojs, memo::pok};

fn main() -> Result<(), has_crypto::Error> {
    // The PKSA's posting key and the relay's server key.
    let posting = PrivateKey::from_login("alice", "sandbox password", KeyRole::Posting)?;
    let server = PrivateKey::from_seed(b"relay server key")?;
    println!("alice posting key  {}", posting.public_key());
    println!("relay server key   {}", server.public_key());

    // App: a fresh auth_key and an encrypted challenge_req payload.
    let auth_key = "03f63469-5a35-47cb-a6b4-e8c4d3144cf9";
    let request =
        r#"{"key_type":"posting","challenge":"login:alice:1690000000000","nonce":1690000000001}"#;
    let data = cryptojs::encrypt(request, auth_key);
    println!("challenge_req.data {data}");

    // PKSA: decrypt strictly, sign the challenge (hive-js signBuffer bytes).
    let plain = cryptojs::decrypt(&data, auth_key)?;
    println!("PKSA decrypted     {}", plain.expose_secret());
    let challenge = "login:alice:1690000000000";
    let signature = posting.sign_buffer(challenge.as_bytes());
    println!("signature          {signature}");

    // PKSA → relay: the Proof of Key over the request uuid.
    let cache = SharedSecretCache::default();
    let uuid = "9b0e2dc3-f574-4766-abdd-c429dce11284";
    let proof = pok::encode(&cache.channel(&posting, server.public_key()), uuid);
    let signer = pok::verify(&server, &cache, &proof, uuid)?;
    println!("relay POK check    from {signer}");

    // App: verify the returned signature against the public key.
    let parsed = Signature::from_hex(&signature.to_hex())?;
    parsed.verify_buffer(challenge.as_bytes(), posting.public_key())?;
    println!(
        "app verified       ok (recovers to {})",
        parsed.recover_buffer(challenge.as_bytes())?
    );
    Ok(())
}
