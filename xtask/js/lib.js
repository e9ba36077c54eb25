// Shared helpers for the vector generators and interop checks.
// Run by `cargo xtask vectors` / `cargo xtask interop` with NODE_PATH pointing at the scratch
// node_modules where the pinned packages (package.json next to this file) were installed.
'use strict';

const crypto = require('crypto');
const path = require('path');
const fs = require('fs');

// Deterministic pseudo-random bytes (sha256 counter mode) so regeneration is reproducible.
class Prng {
  constructor(seed) {
    this.seed = Buffer.from(String(seed));
    this.counter = 0;
  }
  bytes(n) {
    const out = [];
    let have = 0;
    while (have < n) {
      const c = Buffer.alloc(8);
      c.writeBigUInt64LE(BigInt(this.counter++));
      const block = crypto.createHash('sha256').update(this.seed).update(c).digest();
      out.push(block);
      have += block.length;
    }
    return Buffer.concat(out).slice(0, n);
  }
  int(max) {
    return this.bytes(4).readUInt32LE(0) % max;
  }
  pick(arr) {
    return arr[this.int(arr.length)];
  }
  uuid() {
    const b = this.bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  text(maxLen) {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}[]":,.-_#é爱😀\\/\n\t';
    const chars = Array.from(alphabet);
    const len = this.int(maxLen + 1);
    let s = '';
    for (let i = 0; i < len; i++) s += this.pick(chars);
    return s;
  }
}

function pkgVersion(name) {
  const p = require.resolve(`${name}/package.json`);
  return JSON.parse(fs.readFileSync(p, 'utf8')).version;
}

function provenance(generator, packages, extra) {
  const versions = {};
  for (const p of packages) versions[p] = pkgVersion(p);
  return Object.assign(
    {
      generator: `xtask/js/${generator} (run by \`cargo xtask vectors\`)`,
      packages: versions,
      note: 'Generated from the npm packages above; do not edit by hand.',
    },
    extra || {},
  );
}

function writeJson(dir, name, obj) {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(obj, null, 1) + '\n');
  return file;
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest();
}

function check(cond, msg) {
  if (!cond) throw new Error(`generator self-check failed: ${msg}`);
}

module.exports = { Prng, provenance, writeJson, sha256, check, pkgVersion };
