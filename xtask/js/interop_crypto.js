// Live cross-check of has-crypto against the JS libraries (run by `cargo xtask interop crypto`).
// usage: node interop_crypto.js RUST_CASES.json OUT.json COUNT
//  1. Every case Rust produced is decrypted / verified / decoded (and, where the JS library is
//     deterministic, re-produced byte for byte) by crypto-js, hive-js and dhive.
//  2. COUNT fresh cases per kind are produced by the JS libraries for Rust to check.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const CryptoJS = require('crypto-js');
const dhive = require('@hiveio/dhive');
const hivejs = require('@hiveio/hive-js');
const ecc = require('@hiveio/hive-js/lib/auth/ecc');

const [input, output, countArg] = process.argv.slice(2);
const count = Number(countArg || 100);
const rust = JSON.parse(fs.readFileSync(input, 'utf8'));
const origLog = console.log;
console.log = (...a) => {
  if (typeof a[0] === 'string' && a[0].startsWith('WARN:')) return;
  origLog(...a);
};

const mismatches = [];
const checked = {};
function record(kind, ok, detail) {
  checked[kind] = (checked[kind] || 0) + 1;
  if (!ok) mismatches.push({ kind, detail });
}
function attempt(kind, detail, fn) {
  try {
    record(kind, fn(), detail);
  } catch (e) {
    record(kind, false, Object.assign({ error: e.message }, detail));
  }
}

for (const c of rust.aes) {
  attempt('aes_rust_to_cryptojs', c, () => CryptoJS.AES.decrypt(c.ciphertext, c.passphrase).toString(CryptoJS.enc.Utf8) === c.plaintext);
}
for (const c of rust.sign_buffer) {
  attempt('sign_buffer_rust_to_hivejs', c, () => {
    const msg = Buffer.from(c.message, 'utf8');
    const sig = ecc.Signature.fromHex(c.signature);
    const same = ecc.Signature.signBuffer(msg, c.wif).toHex() === c.signature;
    return same && sig.verifyBuffer(msg, ecc.PublicKey.fromString(c.public_key));
  });
}
for (const c of rust.sign_digest) {
  attempt('sign_digest_rust_to_dhive', c, () => {
    const digest = Buffer.from(c.digest_hex, 'hex');
    const key = dhive.PrivateKey.fromString(c.wif);
    const same = key.sign(digest).toString() === c.signature;
    const sig = dhive.Signature.fromString(c.signature);
    return same && sig.recover(digest).toString() === c.public_key && key.createPublic().verify(digest, sig);
  });
}
for (const c of rust.memo) {
  attempt('memo_rust_to_js', c, () => {
    const byDhive = dhive.Memo.decode(dhive.PrivateKey.fromString(c.recipient_wif), c.memo) === c.text;
    const same = dhive.Memo.encode(dhive.PrivateKey.fromString(c.sender_wif), dhive.PublicKey.fromString(c.recipient_public), c.text, c.nonce) === c.memo;
    const byHivejs = hivejs.memo.decode(c.recipient_wif, c.memo) === c.text;
    return byDhive && same && byHivejs;
  });
}
for (const c of rust.keys) {
  attempt('keys_rust_to_js', c, () => {
    const d = dhive.PrivateKey.fromString(c.wif);
    const h = ecc.PrivateKey.fromWif(c.wif);
    return d.createPublic().toString() === c.public_key && h.toPublicKey().toString() === c.public_key && d.createPublic('TST').toString() === c.public_key_tst;
  });
}

// JS-produced cases for Rust.
const randText = (n) => {
  const chars = Array.from('abcdefghijklmnopqrstuvwxyz0123456789 {}[]":,.#é爱😀\n');
  let s = '';
  const len = crypto.randomInt(n + 1);
  for (let i = 0; i < len; i++) s += chars[crypto.randomInt(chars.length)];
  return s;
};
const js = { aes: [], sign_buffer: [], sign_digest: [], memo: [], keys: [] };
for (let i = 0; i < count; i++) {
  const pass = i % 2 ? crypto.randomUUID() : randText(40);
  const pt = randText(300);
  js.aes.push({ passphrase: pass, plaintext: pt, ciphertext: CryptoJS.AES.encrypt(pt, pass).toString() });

  const key = dhive.PrivateKey.fromSeed(crypto.randomBytes(32));
  const wif = key.toString();
  const pub = key.createPublic().toString();
  const msg = randText(200);
  js.sign_buffer.push({ wif, public_key: pub, message: msg, signature: ecc.Signature.signBuffer(Buffer.from(msg, 'utf8'), wif).toHex() });
  const digest = crypto.randomBytes(32);
  js.sign_digest.push({ wif, public_key: pub, digest_hex: digest.toString('hex'), signature: key.sign(digest).toString() });

  const other = dhive.PrivateKey.fromSeed(crypto.randomBytes(32));
  const text = '#' + randText(120);
  const memo = i % 2 ? dhive.Memo.encode(key, other.createPublic(), text) : hivejs.memo.encode(wif, other.createPublic().toString(), text);
  js.memo.push({ sender_wif: wif, recipient_wif: other.toString(), text, memo });

  const login = dhive.PrivateKey.fromLogin(`acct${i}`, crypto.randomUUID(), ['owner', 'active', 'posting', 'memo'][i % 4]);
  js.keys.push({ wif: login.toString(), public_key: login.createPublic().toString(), public_key_tst: login.createPublic('TST').toString() });
}
fs.writeFileSync(output, JSON.stringify({ checked, mismatches, js }));
