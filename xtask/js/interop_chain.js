// Live cross-check of hive-chain against dhive (run by `cargo xtask interop chain`).
// usage: node interop_chain.js CASES.json OUT.json
// Each case: {op, rust_hex} → dhive serializes `op` and the bytes must be equal; each
// transaction case: {tx, chain_id, rust_digest, rust_signature, wif} → digest and signature too.
'use strict';
const fs = require('fs');
const dhive = require('@hiveio/dhive');
const ByteBuffer = require('@ecency/bytebuffer');
const [input, output] = process.argv.slice(2);
const cases = JSON.parse(fs.readFileSync(input, 'utf8'));
const mismatches = [];
const checked = {};
const count = (k, ok, detail) => {
  checked[k] = (checked[k] || 0) + 1;
  if (!ok) mismatches.push(Object.assign({ kind: k }, detail));
};
for (const c of cases.ops) {
  try {
    const buf = new ByteBuffer(ByteBuffer.DEFAULT_CAPACITY, ByteBuffer.LITTLE_ENDIAN);
    dhive.Types.Operation(buf, c.op);
    buf.flip();
    const hex = Buffer.from(buf.toBuffer()).toString('hex');
    count(`op_${c.op[0]}`, hex === c.rust_hex, { op: c.op, rust: c.rust_hex, dhive: hex });
  } catch (e) {
    count(`op_${c.op[0]}`, false, { op: c.op, error: e.message });
  }
}
for (const c of cases.txs) {
  try {
    const chain = Buffer.from(c.chain_id, 'hex');
    const digest = dhive.cryptoUtils.transactionDigest(c.tx, chain).toString('hex');
    const signed = dhive.cryptoUtils.signTransaction(c.tx, [dhive.PrivateKey.fromString(c.wif)], chain);
    const id = dhive.cryptoUtils.generateTrxId(c.tx);
    count('transaction', digest === c.rust_digest && signed.signatures[0] === c.rust_signature && id === c.rust_id, { tx: c.tx, digest, signature: signed.signatures[0], id });
  } catch (e) {
    count('transaction', false, { error: e.message });
  }
}
fs.writeFileSync(output, JSON.stringify({ checked, mismatches }));
