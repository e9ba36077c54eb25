// cargo xtask interop apps: three independent app libraries from npm drive a PKSA through
// has-relay, as apps do:
// - hive-auth-wrapper 1.0.0 (the ecosystem's own; browser-only ESM),
// - @aioha/aioha 1.8.5 (the multi-provider login library; its HiveAuth provider, ESM),
// - hive-auth-client 0.1.5 (an event-based client; CommonJS, sends sign_req without a nonce).
// They run in Node with a browser shim (`window`, `WebSocket` over the `ws` package,
// `localStorage`). Every frame they send or receive is recorded with the inner payloads, for
// the Rust side to check against the schemas; signatures and transactions are verified here
// with hive-js and dhive against the account's keys.
//
// usage: node interop_apps.js LABEL RELAY_URL HIVE_API_URL ACCOUNT AUTH_REQ_SECRET POSTING_PUBKEY
// prints one JSON object {versions, frames, payloads, checks} on stdout.
'use strict';

const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');
const WS = require('ws');
const CryptoJS = require('crypto-js');
const dhive = require('@hiveio/dhive');
const ecc = require('@hiveio/hive-js/lib/auth/ecc');

const [label, relayUrl, hiveApi, account, secret, postingPub] = process.argv.slice(2);
if (!postingPub) {
  console.error('usage: interop_apps.js LABEL RELAY_URL HIVE_API_URL ACCOUNT SECRET POSTING_PUBKEY');
  process.exit(2);
}
const modules = process.env.NODE_PATH;

const frames = [];
const checks = [];
let lib = '';
const check = (name, ok, detail) => {
  checks.push({ lib, name, ok: !!ok, detail: detail === undefined ? null : String(detail) });
};

// The browser WebSocket API over the `ws` package, recording every frame with the library
// that opened the socket.
class ShimWebSocket {
  constructor(url) {
    const owner = lib;
    this.owner = owner;
    this.ws = new WS(url);
    this.ws.on('open', () => this.onopen && this.onopen({ type: 'open' }));
    this.ws.on('message', (data, isBinary) => {
      const text = data.toString();
      frames.push({ lib: owner, dir: 'in', binary: isBinary, text });
      if (this.onmessage) this.onmessage({ data: text });
    });
    this.ws.on('close', (code, reason) => {
      if (this.onclose) this.onclose({ code, reason: reason.toString(), wasClean: code === 1000 });
    });
    this.ws.on('error', (e) => console.error(`${owner}: websocket error:`, e.message));
  }
  get readyState() {
    return this.ws.readyState;
  }
  send(text) {
    frames.push({ lib: this.owner, dir: 'out', binary: false, text });
    this.ws.send(text);
  }
  close() {
    this.ws.close();
  }
}
const storage = new Map();
globalThis.window = globalThis;
globalThis.WebSocket = ShimWebSocket;
// hive-auth-client's onopen handler reads the browser's global `event`.
globalThis.event = undefined;
globalThis.localStorage = {
  getItem: (k) => (storage.has(k) ? storage.get(k) : null),
  setItem: (k, v) => storage.set(k, String(v)),
  removeItem: (k) => storage.delete(k),
  clear: () => storage.clear(),
};

const versionOf = (pkg) =>
  JSON.parse(fs.readFileSync(path.join(modules, pkg, 'package.json'), 'utf8')).version;
const decrypt = (data, key) => CryptoJS.AES.decrypt(data, key).toString(CryptoJS.enc.Utf8);

function verifyChallenge(what, challenge, data) {
  data = data || {};
  check(`${what}: pubkey is the account's posting key`, data.pubkey === postingPub, data.pubkey);
  let ok = false;
  try {
    ok = ecc.Signature.fromHex(data.challenge).verifyBuffer(
      Buffer.from(challenge, 'utf8'),
      ecc.PublicKey.fromString(data.pubkey),
    );
  } catch (e) {
    ok = false;
  }
  check(`${what}: signature verifies with hive-js`, ok, data.challenge);
}

// The dry-run node recorded the broadcast once, with the operations the app sent, signed
// by the posting key (checked with dhive).
async function verifyBroadcast(what, txId, ops) {
  check(`${what}: tx id`, /^[0-9a-f]{40}$/.test(txId), txId);
  const res = await fetch(hiveApi, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'dry_run.get_transactions', params: [] }),
  });
  const recorded = (await res.json()).result.filter((t) => t.id === txId);
  check(`${what}: the node recorded the transaction once`, recorded.length === 1, recorded.length);
  if (recorded.length !== 1) return;
  const tx = recorded[0].transaction;
  check(`${what}: the transaction carries the app's operations`, util.isDeepStrictEqual(tx.operations, ops), JSON.stringify(tx.operations));
  check(`${what}: dhive computes the same tx id`, dhive.cryptoUtils.generateTrxId(tx) === txId);
  const digest = dhive.cryptoUtils.transactionDigest(tx);
  const pub = dhive.PublicKey.fromString(postingPub);
  const ok = tx.signatures.length === 1 && pub.verify(digest, dhive.Signature.fromString(tx.signatures[0]));
  check(`${what}: the signature verifies with dhive`, ok, tx.signatures);
}

// setOptions warns "do not enable SendAuthKey unless you run your own PKSA in service mode":
// this is that PKSA.
function quietly(f) {
  const warn = console.warn;
  console.warn = () => {};
  try {
    f();
  } finally {
    console.warn = warn;
  }
}

async function settle(promise) {
  try {
    return { resolved: await promise };
  } catch (e) {
    return { rejected: e };
  }
}

const vote = (permlink) => ['vote', { voter: account, author: 'hiveio', permlink, weight: 10000 }];
const transfer = ['transfer', { from: account, to: 'hiveio', amount: '1.000 HIVE', memo: 'interop' }];
// A challenge key type the protocol does not have: the service refuses the whole auth_req
// with its fixed auth_err text.
const BAD_KEY_TYPE = 'owner';
const AUTH_ERR_TEXT = 'Failed to process authentication request';

// The inner payloads of one library's frames, decrypted with the keys it used.
function payloadsOf(name, keys) {
  const out = [];
  const inner = {
    'out:auth_req': 'auth_req_data',
    'out:sign_req': 'sign_req_data',
    'out:challenge_req': 'challenge_req_data',
    'in:auth_ack': 'auth_ack_data',
    'in:challenge_ack': 'challenge_ack_data',
  };
  const mine = frames.filter((f) => f.lib === name);
  // Every auth_req carries its session key encrypted with the auth_req_secret: with those,
  // even the payloads of a refused authentication (whose key the library dropped) decrypt.
  keys = [...keys];
  for (const f of mine) {
    try {
      const m = JSON.parse(f.text);
      if (f.dir === 'out' && m.cmd === 'auth_req' && typeof m.auth_key === 'string') {
        const k = decrypt(m.auth_key, secret);
        if (k) keys.push(k);
      }
    } catch (e) {
      // not JSON or not decryptable: checked below
    }
  }
  for (const f of mine) {
    let m;
    try {
      m = JSON.parse(f.text);
    } catch (e) {
      continue;
    }
    const kind = inner[`${f.dir}:${m.cmd}`];
    if (!kind || typeof m.data !== 'string') continue;
    // The key that decrypts it (an app holds one key per session); a frame none of the
    // library's keys decrypts is reported (its payload would go unchecked). A wrong key
    // passes the padding check about once in 256 tries and can then yield a short valid
    // UTF-8 string ("/" was seen in CI): only a JSON object counts as decrypted.
    let found = false;
    for (const k of keys) {
      let text = '';
      try {
        text = decrypt(m.data, k);
        const v = JSON.parse(text);
        if (v === null || typeof v !== 'object' || Array.isArray(v)) text = '';
      } catch (e) {
        text = '';
      }
      if (text) {
        // The deliberately bad auth_req (BAD_KEY_TYPE) must fail the schema, as the service
        // refuses it.
        const invalid = kind === 'auth_req_data' && text.includes(`"key_type":"${BAD_KEY_TYPE}"`);
        out.push({ lib: name, name: kind, text, invalid });
        found = true;
        break;
      }
    }
    if (!found) {
      lib = name;
      check(`the ${kind} of a ${m.cmd} decrypts with one of the library's keys`, false, f.text.slice(0, 120));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// hive-auth-wrapper 1.0.0
async function wrapper() {
  lib = 'hive-auth-wrapper';
  // The package ships ESM in a .js file without "type": "module": load a .mjs copy placed
  // next to it, so its bare imports resolve from the same node_modules.
  const dir = path.join(modules, 'hive-auth-wrapper');
  const mjs = path.join(dir, 'has-wrapper.interop.mjs');
  fs.writeFileSync(mjs, fs.readFileSync(path.join(dir, 'has-wrapper.js')));
  const HAS = (await import(pathToFileURL(mjs).href)).default;
  quietly(() => HAS.setOptions({ host: relayUrl, auth_key_secret: secret }));
  check('connect', await HAS.connect());
  check('connected: the relay announced a timeout', HAS.status().timeout > 0, JSON.stringify(HAS.status()));
  const app = { name: 'hive-auth-wrapper-interop', description: 'cargo xtask interop apps' };

  // Authentication with a challenge (a new session).
  const auth = { username: account };
  const c1 = `interop-login-${Date.now()}`;
  const a = await HAS.authenticate(auth, app, { key_type: 'posting', challenge: c1 });
  check('auth with a challenge: auth_ack', a.cmd === 'auth_ack', a.cmd);
  check('auth_ack: expire in the future', a.data.expire > Date.now(), a.data.expire);
  check('auth_ack: session key kept', typeof auth.key === 'string' && auth.key.length > 0);
  verifyChallenge('auth_ack challenge', c1, a.data.challenge);

  // Authentication without a challenge (another new session).
  const plain = { username: account };
  const p = await HAS.authenticate(plain, app);
  check('auth without a challenge: auth_ack', p.cmd === 'auth_ack' && p.data.expire > Date.now(), p.cmd);
  check('auth without a challenge: no challenge answered', !p.data.challenge, JSON.stringify(p.data));
  check('the two sessions have different keys', plain.key && plain.key !== auth.key);

  // Re-authentication with the stored key: the session is renewed.
  const a2 = await HAS.authenticate(auth, app);
  check('re-auth: auth_ack', a2.cmd === 'auth_ack' && a2.data.expire >= a.data.expire, a2.data.expire);

  // A challenge on the session.
  const c2 = `interop-challenge-${Date.now()}`;
  const ch = await HAS.challenge(auth, { key_type: 'posting', challenge: c2 });
  check('challenge_ack', ch.cmd === 'challenge_ack', ch.cmd);
  verifyChallenge('challenge_ack', c2, ch.data);

  // A challenge with the active key: the default policy refuses it.
  const cn = await settle(HAS.challenge(auth, { key_type: 'active', challenge: `interop-${Date.now()}` }));
  const cnack = cn.rejected || {};
  check('active challenge: challenge_nack', cnack.cmd === 'challenge_nack', cnack.cmd || (cn.rejected && cn.rejected.message));

  // A broadcast of a posting operation.
  const op = vote(`interop-wrapper-${Date.now()}`);
  const s = await HAS.broadcast(auth, 'posting', [op]);
  check('broadcast: sign_ack', s.cmd === 'sign_ack', s.cmd);
  await verifyBroadcast('broadcast', s.data, [op]);

  // A transfer needs active authority: refused with a sign_nack the wrapper can read.
  const r = await settle(HAS.broadcast(auth, 'active', [transfer]));
  const nack = r.rejected || {};
  check('transfer: sign_nack', nack.cmd === 'sign_nack', nack.cmd || (r.rejected && r.rejected.message));
  if (nack.cmd === 'sign_nack') {
    check('sign_nack: data decrypts to the uuid', decrypt(nack.data, auth.key) === nack.uuid);
  }

  // A vote weight hived refuses: sign_err, whose text the wrapper decrypts and shows.
  const bad = ['vote', { voter: account, author: 'hiveio', permlink: 'x', weight: 20000 }];
  const e = await settle(HAS.broadcast(auth, 'posting', [bad]));
  const msg = e.rejected && e.rejected.message;
  check('invalid vote: sign_err shown as its text', typeof msg === 'string' && msg.startsWith('invalid operation:'), msg);

  // An auth_req the service cannot process: auth_err, readable as it is.
  const ae = await settle(HAS.authenticate({ username: account }, app, { key_type: BAD_KEY_TYPE, challenge: 'x' }));
  const aerr = ae.rejected || {};
  check('bad auth_req: auth_err with the fixed text', aerr.cmd === 'auth_err' && aerr.error === AUTH_ERR_TEXT, JSON.stringify(aerr));

  return payloadsOf(lib, [auth.key, plain.key].filter(Boolean));
}

// ---------------------------------------------------------------------------------------
// @aioha/aioha 1.8.5, HiveAuth provider
async function aioha() {
  lib = '@aioha/aioha';
  const root = path.join(modules, '@aioha', 'aioha', 'build');
  const { Aioha, Providers, KeyTypes } = await import(pathToFileURL(path.join(root, 'index.js')).href);
  // Aioha's HiveAuth provider uses its bundled copy of the wrapper; an app that talks to
  // its own PKSA in service mode sets the relay and the auth_key secret on it.
  const HaWrapper = (await import(pathToFileURL(path.join(root, 'lib', 'hiveauth-wrapper.js')).href)).default;
  quietly(() => HaWrapper.setOptions({ host: relayUrl, auth_key_secret: secret }));
  const app = new Aioha(hiveApi);
  // Only the HiveAuth provider (setup() would also register the browser extensions').
  app.registerHiveAuth({ name: 'aioha-interop', description: 'cargo xtask interop apps' });

  // Login: an auth_req with a challenge (Aioha always sends one).
  const msg = `interop-aioha-login-${Date.now()}`;
  const login = await app.login(Providers.HiveAuth, account, { msg, keyType: KeyTypes.Posting });
  check('login: success', login.success === true, JSON.stringify(login));
  check('login: the public key is the posting key', login.publicKey === postingPub, login.publicKey);
  verifyChallenge('login challenge', msg, { challenge: login.result, pubkey: login.publicKey });
  const key = localStorage.getItem('hiveauthKey');
  check('login: session kept', !!key && !!localStorage.getItem('hiveauthToken'));

  // signMessage: a challenge_req on the session.
  const text = `interop-aioha-message-${Date.now()}`;
  const signed = await app.signMessage(text, KeyTypes.Posting);
  check('signMessage: success', signed.success === true, JSON.stringify(signed));
  verifyChallenge('signMessage', text, { challenge: signed.result, pubkey: signed.publicKey });

  // signMessage with the active key: refused by the default policy (challenge_nack). Aioha
  // maps only auth_nack and sign_nack to 4001 "rejected"; a challenge_nack comes back as
  // its generic error 5000.
  const denied = await app.signMessage(`interop-${Date.now()}`, KeyTypes.Active);
  // 5000 with the nack object as its text; an expiry would be 4002.
  check('active signMessage: refused', denied.success === false && denied.errorCode === 5000 && denied.error === '[object Object]', JSON.stringify(denied));

  // vote: a broadcast.
  const permlink = `interop-aioha-${Date.now()}`;
  const v = await app.vote('hiveio', permlink, 10000);
  check('vote: success', v.success === true, JSON.stringify(v));
  if (v.success) await verifyBroadcast('vote', v.result, [vote(permlink)]);

  // transfer: active authority, refused (sign_nack).
  const t = await app.transfer('hiveio', 1, 'HIVE', 'interop');
  check('transfer: refused as rejected', t.success === false && t.errorCode === 4001, JSON.stringify(t));

  // An invalid operation: sign_err, shown as the service's text (Aioha prints the Error the
  // wrapper rejects with: "Error: <text>").
  const bad = await app.signAndBroadcastTx([['vote', { voter: account, author: 'hiveio', permlink: 'x', weight: 20000 }]], KeyTypes.Posting);
  check('invalid vote: sign_err shown as its text', bad.success === false && typeof bad.error === 'string' && bad.error.includes('invalid operation: vote: weight'), JSON.stringify(bad));

  // A login the service cannot process: auth_err, shown as its text (not ciphertext).
  await app.logout();
  const failed = await app.login(Providers.HiveAuth, account, { msg: 'x', keyType: BAD_KEY_TYPE });
  check('bad login: auth_err shown as its text', failed.success === false && failed.error === AUTH_ERR_TEXT, JSON.stringify(failed));

  return payloadsOf(lib, [key].filter(Boolean));
}

// ---------------------------------------------------------------------------------------
// hive-auth-client 0.1.5
function next(client, events, ms = 30000) {
  return new Promise((resolve, reject) => {
    const handlers = {};
    const timer = setTimeout(() => {
      done();
      reject(new Error(`none of ${events.join(', ')} within ${ms} ms`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      for (const [name, h] of Object.entries(handlers)) client.removeEventHandler(name, h);
    };
    for (const name of events) {
      handlers[name] = (payload) => {
        done();
        resolve({ event: name, payload });
      };
      client.addEventHandler(name, handlers[name]);
    }
  });
}

async function haClient() {
  lib = 'hive-auth-client';
  const { HasClient } = require(path.join(modules, 'hive-auth-client'));
  const client = new HasClient('unused', secret);
  // The library builds `wss://HOST/` from its first argument; a loopback relay has no TLS.
  client.config.host = relayUrl;
  await client.connect();
  check('connect', client.isConnected === true);
  const app = { name: 'hive-auth-client-interop', description: 'cargo xtask interop apps' };

  // Authentication (the library always sends a challenge).
  const c1 = `interop-hac-login-${Date.now()}`;
  let ev = next(client, ['AuthSuccess', 'AuthFailure', 'Error']);
  client.authenticate({ username: account }, app, { key_type: 'posting', challenge: c1 });
  let r = await ev;
  check('auth: AuthSuccess', r.event === 'AuthSuccess', `${r.event} ${JSON.stringify(r.payload)}`);
  const authData = r.event === 'AuthSuccess' ? { username: account, ...r.payload.authData } : null;
  if (!authData) return [];
  check('auth: token and key', typeof authData.token === 'string' && typeof authData.key === 'string');
  verifyChallenge('auth challenge', c1, r.payload.data.challenge);

  // A challenge.
  const c2 = `interop-hac-challenge-${Date.now()}`;
  ev = next(client, ['ChallengeSuccess', 'ChallengeFailure', 'Error']);
  client.challenge(authData, { key_type: 'posting', challenge: c2 });
  r = await ev;
  check('challenge: ChallengeSuccess', r.event === 'ChallengeSuccess', r.event);
  if (r.event === 'ChallengeSuccess') verifyChallenge('challenge', c2, r.payload.data);

  // A broadcast: this library sends no nonce (the operator allows it for this app).
  const op = vote(`interop-hac-${Date.now()}`);
  ev = next(client, ['SignSuccess', 'SignFailure', 'Error']);
  client.broadcast(authData, 'posting', [op]);
  r = await ev;
  check('broadcast without a nonce: SignSuccess', r.event === 'SignSuccess', r.event);
  if (r.event === 'SignSuccess') await verifyBroadcast('broadcast', r.payload.message.data, [op]);

  // A transfer: refused (sign_nack → SignFailure).
  ev = next(client, ['SignSuccess', 'SignFailure', 'Error']);
  client.broadcast(authData, 'active', [transfer]);
  r = await ev;
  check('transfer: SignFailure', r.event === 'SignFailure', r.event);

  // An auth_req the service cannot process: auth_err → Error with the fixed text.
  ev = next(client, ['AuthSuccess', 'AuthFailure', 'Error']);
  client.authenticate({ username: account }, app, { key_type: BAD_KEY_TYPE, challenge: 'x' });
  r = await ev;
  const m = (r.payload && r.payload.message) || {};
  check('bad auth_req: Error with the fixed auth_err text', r.event === 'Error' && m.cmd === 'auth_err' && m.error === AUTH_ERR_TEXT, JSON.stringify(m));

  return payloadsOf(lib, [authData.key]);
}

async function main() {
  const versions = {};
  const payloads = [];
  for (const [name, run] of [
    ['hive-auth-wrapper', wrapper],
    ['@aioha/aioha', aioha],
    ['hive-auth-client', haClient],
  ]) {
    versions[name] = versionOf(name);
    lib = name;
    try {
      payloads.push(...(await run()));
    } catch (e) {
      lib = name;
      check('ran to the end', false, e && (e.stack || JSON.stringify(e)));
    }
  }
  process.stdout.write(JSON.stringify({ label, versions, frames, payloads, checks }) + '\n');
  process.exit(0);
}

setTimeout(() => {
  console.error('interop apps: timed out; checks so far:', JSON.stringify(checks));
  process.exit(1);
}, 240000).unref();

main().catch((e) => {
  console.error('interop apps failed:', e && (e.stack || JSON.stringify(e)));
  process.exit(1);
});
