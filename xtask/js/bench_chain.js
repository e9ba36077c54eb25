// The JS side of `cargo xtask bench chain`: the same 3-operation transaction with dhive.
'use strict';
const dhive = require('@hiveio/dhive');
const ByteBuffer = require('@ecency/bytebuffer');
const budgetMs = Number(process.argv[2] || 1500);
function bench(fn) {
  for (let i = 0; i < 20; i++) fn();
  let iters = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    if (Number(process.hrtime.bigint() - t0) > 2e6 || iters > 1e6) break;
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
const opsJson = JSON.stringify([
  ['vote', { voter: 'alice', author: 'bob', permlink: 'my-first-post', weight: 10000 }],
  ['custom_json', { required_auths: [], required_posting_auths: ['alice'], id: 'follow', json: '["follow",{"follower":"alice","following":"bob","what":["blog"]}]' }],
  ['comment', { parent_author: 'bob', parent_permlink: 'my-first-post', author: 'alice', permlink: 're-my-first-post', title: '', body: 'Nice post!', json_metadata: '{"app":"bench"}' }],
]);
const key = dhive.PrivateKey.fromSeed('bench');
const chain = Buffer.from('beeab0de00000000000000000000000000000000000000000000000000000000', 'hex');
let n = 0;
const parsedOps = JSON.parse(opsJson);
const tx = (exp, operations) => ({ ref_block_num: 34567, ref_block_prefix: 3451789012, expiration: exp, operations, extensions: [] });
const serialize = (operations) => {
  const buf = new ByteBuffer(ByteBuffer.DEFAULT_CAPACITY, ByteBuffer.LITTLE_ENDIAN);
  dhive.Types.Transaction(buf, tx('2023-11-14T22:14:20', operations));
  buf.flip();
  return buf.toBuffer();
};
const results = {
  // From the JSON text of the ops, as the Rust side's list_from_str.
  tx3_parse_serialize: bench(() => serialize(JSON.parse(opsJson))),
  // From ops already parsed (dhive serializes plain objects without changing them).
  tx3_value_serialize: bench(() => serialize(parsedOps)),
  tx3_parse_serialize_sign: bench(() => {
    n = (n + 1) % 64;
    const exp = new Date((1700000000 + n) * 1000).toISOString().slice(0, -5);
    return dhive.cryptoUtils.signTransaction(tx(exp, JSON.parse(opsJson)), [key], chain);
  }),
};
process.stdout.write(JSON.stringify(results) + '\n');
