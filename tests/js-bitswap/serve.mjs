// Usage: node serve.mjs
// Holds a DAG made here (a DAG-CBOR root linking 40 raw blocks of 10 KiB, all BLAKE3 CIDs),
// serves it over Bitswap, and prints {"addr", "root", "blocks", "bytes"} on one line; runs
// until its stdin closes.
import './polyfill.mjs'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { startNode, BLAKE3 } from './node.mjs'

const { libp2p, blockstore, bitswap } = await startNode({ listen: ['/ip4/127.0.0.1/tcp/0'] })
const put = async (codec, bytes) => {
  const cid = CID.createV1(codec, await BLAKE3.digest(bytes))
  await blockstore.put(cid, bytes)
  return cid
}
const leaves = []
let bytes = 0
for (let i = 0; i < 40; i++) {
  const block = new Uint8Array(10240).map((_, j) => (i * 31 + j * 7) % 251)
  bytes += block.length
  leaves.push(await put(raw.code, block))
}
const rootBytes = dagCbor.encode({ name: 'from helia', leaves })
bytes += rootBytes.length
const root = await put(dagCbor.code, rootBytes)
const addr = libp2p.getMultiaddrs().find((a) => a.toString().includes('/tcp/'))
console.log(JSON.stringify({ addr: addr.toString(), root: root.toString(), blocks: leaves.length + 1, bytes }))
process.stdin.resume()
process.stdin.on('end', async () => {
  await bitswap.stop()
  await libp2p.stop()
  process.exit(0)
})
