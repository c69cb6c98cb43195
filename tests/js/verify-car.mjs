#!/usr/bin/env node
// Independent verifier for ipvec CAR v1 files, built only on the reference
// IPLD packages from npm (@ipld/car, @ipld/dag-cbor, @ipld/dag-json,
// multiformats) and @noble/hashes' BLAKE3.
//
// Usage: node verify-car.mjs FILE.car [--dump-json CID]
//
// On success prints one JSON line
//   {"ok":true,"roots":[...],"blocks":N,"dagCbor":N,"raw":N,"bytes":N,"links":N}
// (plus, with --dump-json, a second line: that block decoded, as DAG-JSON)
// and exits 0. On any failure prints {"ok":false,"error":"..."} and exits 1.
//
// The file is streamed: block bytes are not kept, only each block's CID and
// the links of its dag-cbor value (needed for the completeness check).

import fs from 'node:fs'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagJson from '@ipld/dag-json'
import { CID } from 'multiformats/cid'
import { blake3 } from '@noble/hashes/blake3.js'

const BLAKE3_CODE = 0x1e
const DIGEST_LEN = 32
const DAG_CBOR = 0x71
const RAW = 0x55

class VerifyError extends Error {}

function fail (msg) {
  throw new VerifyError(msg)
}

function usage () {
  fail('usage: node verify-car.mjs FILE.car [--dump-json CID]')
}

function parseArgs (argv) {
  let file
  let dump
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--dump-json') {
      if (i + 1 >= argv.length) usage()
      const s = argv[++i]
      try {
        dump = CID.parse(s)
      } catch (e) {
        fail(`--dump-json: cannot parse CID ${JSON.stringify(s)}: ${e.message}`)
      }
    } else if (a.startsWith('--')) {
      fail(`unknown option ${a}`)
    } else if (file === undefined) {
      file = a
    } else {
      usage()
    }
  }
  if (file === undefined) usage()
  return { file, dump }
}

function bytesEqual (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false
  }
  return true
}

function firstDiff (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return i
  }
  return n
}

// Every CID occurring in a decoded dag-cbor value, in document order
// (duplicates kept). Iterative, so deep values cannot blow the JS stack.
function collectLinks (value) {
  const links = []
  const stack = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    if (v === null || typeof v !== 'object') continue
    const cid = CID.asCID(v)
    if (cid) {
      links.push(cid)
    } else if (v instanceof Uint8Array) {
      // bytes: no links inside
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i])
    } else {
      const keys = Object.keys(v)
      for (let i = keys.length - 1; i >= 0; i--) stack.push(v[keys[i]])
    }
  }
  return links
}

function checkCidShape (cid, what) {
  if (cid.version !== 1) fail(`${what} ${cid}: CID version ${cid.version}, expected 1`)
  if (cid.multihash.code !== BLAKE3_CODE) {
    fail(`${what} ${cid}: multihash code 0x${cid.multihash.code.toString(16)}, expected 0x1e (blake3)`)
  }
  if (cid.multihash.size !== DIGEST_LEN || cid.multihash.digest.length !== DIGEST_LEN) {
    fail(`${what} ${cid}: digest length ${cid.multihash.size}, expected ${DIGEST_LEN}`)
  }
}

async function verify (file, dump) {
  try {
    await fs.promises.access(file, fs.constants.R_OK)
  } catch (e) {
    fail(`cannot read ${file}: ${e.message}`)
  }
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 })
  try {
    return await verifyStream(stream, dump)
  } finally {
    stream.destroy()
  }
}

async function verifyStream (stream, dump) {
  let reader
  try {
    reader = await CarBlockIterator.fromIterable(stream)
  } catch (e) {
    fail(`bad CAR header: ${e.message}`)
  }
  if (reader.version !== 1) fail(`CAR version ${reader.version}, expected 1`)
  const roots = await reader.getRoots()
  if (!Array.isArray(roots) || roots.length === 0) fail('CAR header has no roots')
  roots.forEach((r, i) => checkCidShape(r, `root ${i}`))

  // CID string -> array of link CID strings (empty for raw blocks)
  const present = new Map()
  let blocks = 0
  let nDagCbor = 0
  let nRaw = 0
  let totalBytes = 0
  let nLinks = 0
  let dumped
  let dumpFound = false

  let index = 0
  try {
    for await (const { cid, bytes } of reader) {
      const what = `block ${index}`
      checkCidShape(cid, what)
      const digest = blake3(bytes)
      if (!bytesEqual(digest, cid.multihash.digest)) {
        fail(`${what} ${cid}: BLAKE3 mismatch (computed ${Buffer.from(digest).toString('hex')})`)
      }
      let linkStrs
      let decoded
      if (cid.code === DAG_CBOR) {
        try {
          decoded = dagCbor.decode(bytes)
        } catch (e) {
          fail(`${what} ${cid}: dag-cbor decode failed: ${e.message}`)
        }
        let again
        try {
          again = dagCbor.encode(decoded)
        } catch (e) {
          fail(`${what} ${cid}: dag-cbor re-encode failed: ${e.message}`)
        }
        if (!bytesEqual(again, bytes)) {
          fail(`${what} ${cid}: dag-cbor not canonical: re-encoding differs ` +
            `(length ${bytes.length} vs ${again.length}, first difference at byte ${firstDiff(bytes, again)})`)
        }
        const links = collectLinks(decoded)
        nLinks += links.length
        linkStrs = links.map((l) => l.toString())
        nDagCbor++
      } else if (cid.code === RAW) {
        linkStrs = []
        nRaw++
      } else {
        fail(`${what} ${cid}: unsupported codec 0x${cid.code.toString(16)}`)
      }
      const key = cid.toString()
      if (!present.has(key)) present.set(key, linkStrs)
      if (dump && !dumpFound && cid.equals(dump)) {
        dumpFound = true
        dumped = cid.code === DAG_CBOR ? decoded : new Uint8Array(bytes)
      }
      blocks++
      totalBytes += bytes.length
      index++
    }
  } catch (e) {
    if (e instanceof VerifyError) throw e
    fail(`bad CAR data after ${index} block(s): ${e.message}`)
  }

  // Completeness: every root present, every link reachable from a root present.
  const rootStrs = roots.map((r) => r.toString())
  const seen = new Set()
  const queue = []
  for (const r of rootStrs) {
    if (!present.has(r)) fail(`root ${r} is not in the file`)
    if (!seen.has(r)) { seen.add(r); queue.push(r) }
  }
  while (queue.length > 0) {
    const c = queue.pop()
    for (const l of present.get(c)) {
      if (!present.has(l)) fail(`incomplete DAG: block ${c} links to ${l}, which is not in the file`)
      if (!seen.has(l)) { seen.add(l); queue.push(l) }
    }
  }

  const summary = {
    ok: true,
    roots: rootStrs,
    blocks,
    dagCbor: nDagCbor,
    raw: nRaw,
    bytes: totalBytes,
    links: nLinks
  }
  let dumpLine
  if (dump) {
    if (!dumpFound) fail(`--dump-json: block ${dump} is not in the file`)
    dumpLine = new TextDecoder().decode(dagJson.encode(dumped))
  }
  return { summary, dumpLine }
}

function write (line) {
  return new Promise((resolve) => process.stdout.write(line + '\n', resolve))
}

async function main () {
  let out
  try {
    const { file, dump } = parseArgs(process.argv.slice(2))
    out = await verify(file, dump)
  } catch (e) {
    const msg = e instanceof VerifyError ? e.message : `unexpected error: ${e && e.stack ? e.stack : e}`
    await write(JSON.stringify({ ok: false, error: msg }))
    process.exitCode = 1
    return
  }
  await write(JSON.stringify(out.summary))
  if (out.dumpLine !== undefined) await write(out.dumpLine)
  process.exitCode = 0
}

main()
