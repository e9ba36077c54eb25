// cargo xtask interop relay: the npm package hive-auth-wrapper (the app library of the HAS
// ecosystem; browser-only ESM) runs in Node with a `window` / `WebSocket` shim and talks
// through has-relay to pksa-service. Every frame the wrapper sends or receives is recorded
// (with the inner payloads it encrypted or decrypted) for the Rust side to check against the
// schemas; the results are checked here with hive-js and dhive.
//
// usage: node interop_relay.js RELAY_URL HIVE_API_URL ACCOUNT AUTH_REQ_SECRET POSTING_PUBKEY
// prints one JSON object {frames, payloads, checks} on stdout.
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const WS = require('ws');
const CryptoJS = require('crypto-js');
const dhive = require('@hiveio/dhive');
const ecc = require('@hiveio/hive-js/lib/auth/ecc');

const [relayUrl, hiveApi, account, secret, postingPub] = process.argv.slice(2);
if (!postingPub) {
  console.error('usage: interop_relay.js RELAY_URL HIVE_API_URL ACCOUNT SECRET POSTING_PUBKEY');
  process.exit(2);
}

const frames = [];
const checks = [];
const check = (name, ok, detail) => {
  checks.push({ name, ok: !!ok, detail: detail === undefined ? null : String(detail) });
};

// The browser WebSocket API over the `ws` package, recording every frame.
class ShimWebSocket {
  constructor(url) {
    this.ws = new WS(url);
    this.ws.on('open', () => this.onopen && this.onopen());
    this.ws.on('message', (data, isBinary) => {
      const text = data.toString();
      frames.push({ dir: 'in', binary: isBinary, text });
      if (this.onmessage) this.onmessage({ data: text });
    });
    this.ws.on('close', (code, reason) => {
      if (this.onclose) this.onclose({ code, reason: reason.toString() });
    });
    this.ws.on('error', (e) => console.error('websocket error:', e.message));
  }
  get readyState() {
    return this.ws.readyState;
  }
  send(text) {
    frames.push({ dir: 'out', binary: false, text });
    this.ws.send(text);
  }
  close() {
    this.ws.close();
  }
}
globalThis.window = globalThis;
globalThis.WebSocket = ShimWebSocket;

// The package ships ESM in a .js file without "type": "module": load a .mjs copy placed next
// to it, so its bare imports (uuid, crypto-js, assert) resolve from the same node_modules.
async function loadWrapper() {
  const dir = path.join(process.env.NODE_PATH, 'hive-auth-wrapper');
  const src = path.join(dir, 'has-wrapper.js');
  const mjs = path.join(dir, 'has-wrapper.interop.mjs');
  fs.writeFileSync(mjs, fs.readFileSync(src));
  const version = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  return { HAS: (await import(pathToFileURL(mjs).href)).default, version };
}

const decrypt = (data, key) => CryptoJS.AES.decrypt(data, key).toString(CryptoJS.enc.Utf8);

function verifyChallenge(label, challenge, data) {
  check(`${label}: pubkey is the account's posting key`, data.pubkey === postingPub, data.pubkey);
  let ok = false;
  try {
    ok = ecc.Signature.fromHex(data.challenge).verifyBuffer(
      Buffer.from(challenge, 'utf8'),
      ecc.PublicKey.fromString(data.pubkey),
    );
  } catch (e) {
    ok = false;
  }
  check(`${label}: signature verifies with hive-js`, ok, data.challenge);
}

async function rejected(promise) {
  try {
    const v = await promise;
    return { resolved: v };
  } catch (e) {
    return { rejected: e };
  }
}

async function main() {
  const { HAS, version } = await loadWrapper();
  HAS.setOptions({ host: relayUrl, auth_key_secret: secret });
  check('connect', await HAS.connect());
  check('connected: protocol 1', HAS.status().timeout > 0, JSON.stringify(HAS.status()));

  // 1. Authentication with a challenge (new session: the sandbox's enrollment window is open).
  const auth = { username: account };
  const app = { name: 'hive-auth-wrapper-interop', description: 'cargo xtask interop relay' };
  const c1 = `interop-login-${Date.now()}`;
  const a = await HAS.authenticate(auth, app, { key_type: 'posting', challenge: c1 });
  check('auth_ack', a.cmd === 'auth_ack', a.cmd);
  check('auth_ack: expire in the future', a.data.expire > Date.now(), a.data.expire);
  check('auth_ack: session key kept', typeof auth.key === 'string' && auth.key.length > 0);
  verifyChallenge('auth_ack challenge', c1, a.data.challenge || {});

  // 2. Re-authentication with the stored key (the session is renewed, not re-enrolled).
  const a2 = await HAS.authenticate(auth, app);
  check('re-auth auth_ack', a2.cmd === 'auth_ack' && a2.data.expire >= a.data.expire, a2.data.expire);

  // 3. A challenge on the session.
  const c2 = `interop-challenge-${Date.now()}`;
  const ch = await HAS.challenge(auth, { key_type: 'posting', challenge: c2 });
  check('challenge_ack', ch.cmd === 'challenge_ack', ch.cmd);
  verifyChallenge('challenge_ack', c2, ch.data);

  // 4. A broadcast of a posting operation: the tx id, then the transaction on the dry-run node
  // verified with dhive against the posting key.
  const permlink = `interop-${Date.now()}`;
  const vote = ['vote', { voter: account, author: 'hiveio', permlink, weight: 10000 }];
  const s = await HAS.broadcast(auth, 'posting', [vote]);
  check('sign_ack', s.cmd === 'sign_ack', s.cmd);
  const txId = s.data;
  check('sign_ack: tx id', /^[0-9a-f]{40}$/.test(txId), txId);
  const res = await fetch(hiveApi, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'dry_run.get_transactions', params: [] }),
  });
  const recorded = (await res.json()).result.filter((t) => t.id === txId);
  check('dry-run node recorded the transaction once', recorded.length === 1, recorded.length);
  if (recorded.length === 1) {
    const tx = recorded[0].transaction;
    check('recorded transaction carries the vote', require('util').isDeepStrictEqual(tx.operations, [vote]), JSON.stringify(tx.operations));
    const digest = dhive.cryptoUtils.transactionDigest(tx);
    check('dhive transaction id matches', dhive.cryptoUtils.generateTrxId(tx) === txId);
    const pub = dhive.PublicKey.fromString(postingPub);
    const sigOk = tx.signatures.length === 1 && pub.verify(digest, dhive.Signature.fromString(tx.signatures[0]));
    check('signature verifies with dhive', sigOk, tx.signatures);
  }

  // 5. A transfer needs active authority: the default policy refuses it with a sign_nack.
  const transfer = ['transfer', { from: account, to: 'hiveio', amount: '1.000 HIVE', memo: 'interop' }];
  const r = await rejected(HAS.broadcast(auth, 'active', [transfer]));
  const nack = r.rejected || {};
  check('denied transfer: sign_nack', nack.cmd === 'sign_nack', nack.cmd || (r.rejected && r.rejected.message));
  if (nack.cmd === 'sign_nack') {
    check('sign_nack data decrypts to the uuid', decrypt(nack.data, auth.key) === nack.uuid);
  }

  // The inner payloads the wrapper encrypted and decrypted, for the schema check.
  const payloads = [];
  for (const f of frames) {
    let m;
    try {
      m = JSON.parse(f.text);
    } catch (e) {
      continue;
    }
    const inner = {
      'out:auth_req': 'auth_req_data',
      'out:sign_req': 'sign_req_data',
      'out:challenge_req': 'challenge_req_data',
      'in:auth_ack': 'auth_ack_data',
      'in:challenge_ack': 'challenge_ack_data',
    }[`${f.dir}:${m.cmd}`];
    if (inner && typeof m.data === 'string') {
      payloads.push({ name: inner, text: decrypt(m.data, auth.key) });
    }
  }
  process.stdout.write(JSON.stringify({ wrapper_version: version, frames, payloads, checks }) + '\n');
  process.exit(0);
}

setTimeout(() => {
  console.error('interop relay: timed out; checks so far:', JSON.stringify(checks));
  process.exit(1);
}, 90000).unref();

main().catch((e) => {
  console.error('interop relay failed:', e && (e.stack || JSON.stringify(e)));
  console.error('checks so far:', JSON.stringify(checks));
  process.exit(1);
});
