// An independent MCP client for ipvec's MCP server (node/tests/mcp.rs runs it): the official
// TypeScript SDK over stdio. It lists the tools, makes one search_vectors call, and prints
// {"tools": [names], "search": {isError, structuredContent, text}} as JSON.
//
// Usage: node client.mjs '<search arguments as JSON>' COMMAND [ARG...]
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'

const [, , searchArgs, command, ...args] = process.argv
if (!searchArgs || !command) {
  console.error("usage: node client.mjs '<search arguments as JSON>' COMMAND [ARG...]")
  process.exit(2)
}

const transport = new StdioClientTransport({ command, args, stderr: 'inherit' })
const client = new Client({ name: 'ipvec-js-mcp-test', version: '0.0.0' })
await client.connect(transport)
const { tools } = await client.listTools()
const result = await client.callTool({ name: 'search_vectors', arguments: JSON.parse(searchArgs) })
await client.close()
const text = (result.content ?? []).map((c) => c.text ?? '').join('')
console.log(JSON.stringify({
  server: client.getServerVersion(),
  tools: tools.map((t) => t.name),
  search: { isError: result.isError ?? false, structuredContent: result.structuredContent ?? null, text }
}))
