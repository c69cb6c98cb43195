#!/usr/bin/env node
// Writes a small, deterministic CAR v1 file with an independent IPLD stack
// (@ipld/car, @ipld/dag-cbor, multiformats, @noble/hashes' BLAKE3), so the
// Rust side can test importing a CAR that it did not write itself.
//
// Usage: node make-car.mjs OUT.car
// Prints the root CID (base32, "b...") on stdout.
//
// The DAG (blocks written root first, then children):
//   root (dag-cbor) --links--> leaf (dag-cbor) --links--> raw
//        \------------------------links-----------------> raw
// The values exercise DAG-CBOR details an implementation can get wrong:
// map keys that sort length-first, float64 values, negative integers,
// byte strings, null/booleans, nested lists and maps, and links.

import fs from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarWriter } from '@ipld/car/writer'
import * as dagCbor from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { blake3 as blake3Hash } from '@noble/hashes/blake3.js'

const blake3 = hasherFrom({
  name: 'blake3',
  code: 0x1e,
  encode: (input) => blake3Hash(input)
})

function block (codec, value) {
  const bytes = codec.encode(value)
  const digest = blake3.digest(bytes) // synchronous: encode returns Uint8Array
  return { cid: CID.create(1, codec.code, digest), bytes }
}

function buildBlocks () {
  // 64 bytes: 16 little-endian float32 values 0.0, 0.5, 1.0, ... (a "vector")
  const vec = new Float32Array(16)
  for (let i = 0; i < vec.length; i++) vec[i] = i / 2
  const rawBlock = block(raw, new Uint8Array(vec.buffer))

  const leafBlock = block(dagCbor, {
    kind: 'leaf',
    dim: 16,
    dtype: 'f32le',
    data: rawBlock.cid,
    norm: 0.5,
    bias: -1.25,
    offset: -7,
    big: 2 ** 40,
    tag: new Uint8Array([0xde, 0xad, 0xbe, 0xef]),
    flags: [true, false, null]
  })

  const rootBlock = block(dagCbor, {
    // keys chosen so DAG-CBOR's length-first order differs from plain sorting
    z: 1,
    aa: 'two',
    b: [leafBlock.cid, rawBlock.cid],
    name: 'make-car.mjs test DAG',
    version: 1,
    meta: { created_by: '@ipld/car CarWriter', nested: { x: [1, -2, 3.75] } },
    leaf: leafBlock.cid
  })

  return { root: rootBlock, blocks: [rootBlock, leafBlock, rawBlock] }
}

async function main () {
  const out = process.argv[2]
  if (!out || process.argv.length > 3) {
    process.stderr.write('usage: node make-car.mjs OUT.car\n')
    process.exitCode = 2
    return
  }
  const { root, blocks } = buildBlocks()
  const { writer, out: carBytes } = CarWriter.create([root.cid])
  const done = pipeline(Readable.from(carBytes), fs.createWriteStream(out))
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await done
  process.stdout.write(root.cid.toString() + '\n')
}

main().catch((e) => {
  process.stderr.write(`make-car: ${e && e.stack ? e.stack : e}\n`)
  process.exitCode = 1
})
