// Self-test of make-car.mjs and verify-car.mjs: `npm test` (node --test).
// Builds good and deliberately broken CAR files in a temp dir and checks the
// verifier's verdict (stdout JSON line and exit code) for each.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarWriter } from '@ipld/car/writer'
import * as dagCbor from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { blake3 as blake3Hash } from '@noble/hashes/blake3.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ipvec-js-selftest-'))
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }))

const blake3 = hasherFrom({ name: 'blake3', code: 0x1e, encode: (b) => blake3Hash(b) })
const blake3short = hasherFrom({ name: 'blake3', code: 0x1e, encode: (b) => blake3Hash(b).subarray(0, 20) })

function run (script, ...args) {
  const r = spawnSync(process.execPath, [path.join(here, script), ...args], { encoding: 'utf8' })
  return { status: r.status, lines: r.stdout.split('\n').filter((l) => l !== ''), stderr: r.stderr }
}

function verify (file, ...extra) {
  const r = run('verify-car.mjs', file, ...extra)
  assert.ok(r.lines.length >= 1, `no output; stderr: ${r.stderr}`)
  return { ...r, result: JSON.parse(r.lines[0]) }
}

function expectFail (file, pattern) {
  const r = verify(file)
  assert.equal(r.status, 1, JSON.stringify(r))
  assert.equal(r.result.ok, false)
  assert.equal(r.lines.length, 1)
  assert.match(r.result.error, pattern)
}

function mk (codec, value, hasher = blake3, version = 1) {
  const bytes = codec.encode ? codec.encode(value) : value
  return { cid: CID.create(version, codec.code, hasher.digest(bytes)), bytes }
}

async function writeCar (name, roots, blocks) {
  const file = path.join(tmp, name)
  const { writer, out } = CarWriter.create(roots)
  const chunks = []
  const drain = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await drain
  fs.writeFileSync(file, Buffer.concat(chunks))
  return file
}

function copyWith (src, name, fn) {
  const dst = path.join(tmp, name)
  fs.writeFileSync(dst, fn(Buffer.from(fs.readFileSync(src))))
  return dst
}

const good = path.join(tmp, 'good.car')
let rootStr

test('make-car writes a CAR that verifies', () => {
  const r = run('make-car.mjs', good)
  assert.equal(r.status, 0, r.stderr)
  rootStr = r.lines[0]
  assert.match(rootStr, /^bafyr4i[a-z2-7]+$/) // CIDv1, dag-cbor, blake3
  const v = verify(good)
  assert.equal(v.status, 0)
  assert.deepEqual(v.result, { ok: true, roots: [rootStr], blocks: 3, dagCbor: 2, raw: 1, bytes: 443, links: 4 })
})

test('make-car is deterministic', () => {
  const other = path.join(tmp, 'good2.car')
  assert.equal(run('make-car.mjs', other).status, 0)
  assert.deepEqual(fs.readFileSync(other), fs.readFileSync(good))
})

test('--dump-json prints the block as DAG-JSON', () => {
  const v = verify(good, '--dump-json', rootStr)
  assert.equal(v.status, 0)
  assert.equal(v.lines.length, 2)
  const obj = JSON.parse(v.lines[1])
  assert.equal(obj.name, 'make-car.mjs test DAG')
  assert.match(obj.leaf['/'], /^bafyr4i/)
  const rawCid = obj.b[1]['/']
  const d = verify(good, '--dump-json', rawCid)
  assert.equal(d.status, 0)
  assert.equal(typeof JSON.parse(d.lines[1])['/'].bytes, 'string')
})

test('a flipped byte in any block fails', () => {
  const size = fs.statSync(good).size
  // last byte (raw block) and a byte inside the middle block
  for (const off of [size - 1, 0x180]) {
    const f = copyWith(good, `flip-${off}.car`, (b) => { b[off] ^= 0x01; return b })
    const r = verify(f)
    assert.equal(r.status, 1)
    assert.equal(r.result.ok, false)
  }
  const f = copyWith(good, 'flip-last.car', (b) => { b[b.length - 1] ^= 0x01; return b })
  expectFail(f, /BLAKE3 mismatch/)
})

test('truncated files fail', () => {
  const size = fs.statSync(good).size
  for (const n of [0, 1, 20, 100, size - 65, size - 1]) {
    const f = copyWith(good, `trunc-${n}.car`, (b) => b.subarray(0, n))
    const r = verify(f)
    assert.equal(r.status, 1, `truncated to ${n}: ${JSON.stringify(r)}`)
    assert.equal(r.result.ok, false)
  }
})

test('missing linked block (cut at a block boundary) fails', async () => {
  const leaf = mk(raw, new Uint8Array([1, 2, 3]))
  const root = mk(dagCbor, { l: leaf.cid })
  const f = await writeCar('missing-link.car', [root.cid], [root])
  expectFail(f, /incomplete DAG/)
})

test('root not in the file fails', async () => {
  const a = mk(raw, new Uint8Array([1]))
  const b = mk(raw, new Uint8Array([2]))
  expectFail(await writeCar('missing-root.car', [a.cid], [b]), /root .* is not in the file/)
})

test('no roots fails', async () => {
  const a = mk(raw, new Uint8Array([1]))
  expectFail(await writeCar('no-roots.car', [], [a]), /no roots/)
})

test('non-canonical dag-cbor (keys out of order) fails even with a correct hash', async () => {
  // {"bb":1,"a":2}: DAG-CBOR wants "a" first (length-first ordering)
  const bytes = new Uint8Array([0xa2, 0x62, 0x62, 0x62, 0x01, 0x61, 0x61, 0x02])
  const b = { cid: CID.create(1, dagCbor.code, blake3.digest(bytes)), bytes }
  expectFail(await writeCar('noncanon.car', [b.cid], [b]), /not canonical/)
})

test('non-minimal integer in dag-cbor fails', async () => {
  const bytes = new Uint8Array([0x18, 0x01]) // 1 encoded in two bytes
  const b = { cid: CID.create(1, dagCbor.code, blake3.digest(bytes)), bytes }
  expectFail(await writeCar('nonminimal.car', [b.cid], [b]), /dag-cbor/)
})

test('sha2-256 CID fails', async () => {
  const b = mk(raw, new Uint8Array([1, 2, 3]), sha256)
  expectFail(await writeCar('sha256.car', [b.cid], [b]), /multihash code 0x12/)
})

test('short BLAKE3 digest fails', async () => {
  const b = mk(raw, new Uint8Array([1, 2, 3]), blake3short)
  expectFail(await writeCar('short.car', [b.cid], [b]), /digest length 20/)
})

test('unsupported codec fails', async () => {
  const bytes = new TextEncoder().encode('{}')
  const b = { cid: CID.create(1, 0x0129, blake3.digest(bytes)), bytes } // dag-json
  expectFail(await writeCar('dagjson.car', [b.cid], [b]), /unsupported codec 0x129/)
})

test('CAR v2 is rejected', () => {
  const v1 = fs.readFileSync(good)
  const pragma = Buffer.from([0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02])
  const hdr = Buffer.alloc(40)
  hdr.writeBigUInt64LE(BigInt(pragma.length + 40), 16) // data offset
  hdr.writeBigUInt64LE(BigInt(v1.length), 24) // data size
  hdr.writeBigUInt64LE(0n, 32) // no index
  const f = path.join(tmp, 'v2.car')
  fs.writeFileSync(f, Buffer.concat([pragma, hdr, v1]))
  expectFail(f, /CAR version 2/)
})
