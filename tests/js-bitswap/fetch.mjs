// Usage: node fetch.mjs <multiaddr of an ipvec daemon> <root CID>
// Dials the daemon, fetches every block of the DAG under the root over Bitswap, checks each
// block's hash against its CID, and prints {"blocks", "bytes", "bad"} as JSON.
import './polyfill.mjs'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { startNode, linksOf, verify } from './node.mjs'

const [address, rootText] = process.argv.slice(2)
const { libp2p, bitswap } = await startNode()
await libp2p.dial(multiaddr(address))
const root = CID.parse(rootText)
const seen = new Set([root.toString()])
let queue = [root]
let blocks = 0
let bytes = 0
let bad = 0
while (queue.length > 0) {
  const batch = queue.splice(0, 16)
  const got = await Promise.all(batch.map(async (cid) => [cid, await bitswap.want(cid, { signal: AbortSignal.timeout(30000) })]))
  for (const [cid, block] of got) {
    blocks++
    bytes += block.length
    if (!(await verify(cid, block))) bad++
    for (const link of linksOf(cid, block)) {
      if (!seen.has(link.toString())) { seen.add(link.toString()); queue.push(link) }
    }
  }
}
console.log(JSON.stringify({ blocks, bytes, bad }))
await bitswap.stop()
await libp2p.stop()
