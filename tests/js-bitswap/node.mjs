// A js-libp2p node running Helia's Bitswap over TCP, noise and yamux, with an in-memory
// blockstore that understands BLAKE3 CIDs: the independent peer of the interop tests.
import './polyfill.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { createBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { identify } from '@libp2p/identify'
import { defaultLogger } from '@libp2p/logger'
import { MemoryBlockstore } from 'blockstore-core'
import { createLibp2p } from 'libp2p'
import { blake3 } from '@noble/hashes/blake3'
import { from } from 'multiformats/hashes/hasher'
import { sha256 } from 'multiformats/hashes/sha2'
import { CID } from 'multiformats/cid'
import * as dagCbor from '@ipld/dag-cbor'

export const BLAKE3 = from({ name: 'blake3', code: 0x1e, encode: (bytes) => blake3(bytes) })

// No content routing: blocks are asked of the peers we are connected to.
const noRouting = {
  async * findProviders () {},
  async provide () {},
  async cancelReprovide () {},
  async put () {},
  async get () { throw new Error('no routing') },
  async * findPeer () {},
  async * getClosestPeers () {}
}

export async function startNode ({ listen = [] } = {}) {
  const libp2p = await createLibp2p({
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Identify tells js-libp2p which protocols a peer speaks, so Bitswap sends it wants.
    services: { identify: identify() }
  })
  const blockstore = new MemoryBlockstore()
  const bitswap = createBitswap({ libp2p, blockstore, routing: noRouting, logger: defaultLogger() }, {
    hashLoader: { getHasher: async (code) => (code === BLAKE3.code ? BLAKE3 : sha256) }
  })
  await bitswap.start()
  return { libp2p, blockstore, bitswap }
}

/** The CIDs a block links to (DAG-CBOR), none for raw blocks. */
export function linksOf (cid, bytes) {
  if (cid.code !== dagCbor.code) return []
  const out = []
  const walk = (value) => {
    const asCid = CID.asCID(value)
    if (asCid) { out.push(asCid); return }
    if (value instanceof Uint8Array) return
    if (Array.isArray(value)) { value.forEach(walk); return }
    if (value && typeof value === 'object') Object.values(value).forEach(walk)
  }
  walk(dagCbor.decode(bytes))
  return out
}

/** Whether `bytes` hash to the digest in `cid`. */
export async function verify (cid, bytes) {
  const hasher = cid.multihash.code === BLAKE3.code ? BLAKE3 : sha256
  const digest = await hasher.digest(bytes)
  return Buffer.from(digest.digest).equals(Buffer.from(cid.multihash.digest))
}
