// The JS side of `cargo xtask bench crypto`: the same operations as has-crypto/benches/crypto.rs,
// timed in Node with the reference libraries. Prints {"id": median_ns, ...} as JSON.
'use strict';

const crypto = require('crypto');
const CryptoJS = require('crypto-js');
const dhive = require('@hiveio/dhive');
const ecc = require('@hiveio/hive-js/lib/auth/ecc');

const origLog = console.log;
console.log = (...a) => {
  if (typeof a[0] === 'string' && a[0].startsWith('WARN:')) return;
  origLog(...a);
};

const AUTH_KEY = '03f63469-5a35-47cb-a6b4-e8c4d3144cf9';
const WIF = '5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw';
const budgetMs = Number(process.argv[2] || 1500);

function payload300() {
  let s = '{"key_type":"posting","ops":[["vote",{"voter":"arcange","author":"arcange","permlink":"hello-world-this-is-a-longer-permlink","weight":10000}]],"broadcast":true,"nonce":1690000000001,"pad":"';
  while (s.length < 298) s += 'x';
  return s + '"}';
}

// Median over samples of the mean time per iteration, like criterion's per-sample estimate.
function bench(fn) {
  for (let i = 0; i < 20; i++) fn();
  let iters = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    const dt = Number(process.hrtime.bigint() - t0);
    if (dt > 2e6 || iters > 1e6) break;
    iters *= 2;
  }
  const samples = [];
  const end = Date.now() + budgetMs;
  while (samples.length < 10 || (Date.now() < end && samples.length < 100)) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

const key = dhive.PrivateKey.fromString(WIF);
const server = dhive.PrivateKey.fromSeed('has-server-test-key');
const hjKey = ecc.PrivateKey.fromWif(WIF);
const pt = payload300();
const salt = CryptoJS.enc.Hex.parse('0102030405060708');
const ct = CryptoJS.AES.encrypt(pt, AUTH_KEY, { salt }).toString();
const msgs = [];
for (let i = 0; i < 64; i++) msgs.push(Buffer.from(`{"login":"arcange","ts":${1690000000000 + i}}`));
const digests = [];
for (let i = 0; i < 64; i++) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i);
  digests.push(crypto.createHash('sha256').update(b).digest());
}
const sigHex = ecc.Signature.signBuffer(msgs[0], hjKey).toHex();
const hjPub = hjKey.toPublicKey();
const uuidText = '#9b0e2dc3-f574-4766-abdd-c429dce11284';
const memoStr = dhive.Memo.encode(key, server.createPublic(), uuidText, '1234567890123456789');

let i = 0;
let j = 0;
const results = {
  aes_encrypt_300B: bench(() => CryptoJS.AES.encrypt(pt, AUTH_KEY, { salt }).toString()),
  aes_decrypt_300B: bench(() => CryptoJS.AES.decrypt(ct, AUTH_KEY).toString(CryptoJS.enc.Utf8)),
  sign_buffer: bench(() => {
    i = (i + 1) % msgs.length;
    return ecc.Signature.signBuffer(msgs[i], hjKey).toHex();
  }),
  sign_transaction_digest: bench(() => {
    j = (j + 1) % digests.length;
    return key.sign(digests[j]).toString();
  }),
  verify_challenge: bench(() => ecc.Signature.fromHex(sigHex).verifyBuffer(msgs[0], hjPub)),
  recover_challenge: bench(() => ecc.Signature.fromHex(sigHex).recoverPublicKeyFromBuffer(msgs[0]).toString()),
  // The JS libraries have no shared-secret cache: "cached" and "uncached" are the same call.
  memo_encode_cached: bench(() => dhive.Memo.encode(key, server.createPublic(), uuidText, '1234567890123456789')),
  memo_encode_uncached: null,
  memo_decode_cached: bench(() => dhive.Memo.decode(server, memoStr)),
  memo_decode_uncached: null,
  wif_parse: bench(() => dhive.PrivateKey.fromString(WIF)),
};
results.memo_encode_uncached = results.memo_encode_cached;
results.memo_decode_uncached = results.memo_decode_cached;
process.stdout.write(JSON.stringify(results) + '\n');
