"""An independent MCP client for ipvec's MCP server (node/tests/mcp.rs runs it).

It connects with the official Python SDK (PyPI `mcp`), over stdio to a command or over
streamable HTTP to a URL, lists the tools, makes the calls a plan file names in order, and
prints one JSON document on stdout:

    {"server": {...}, "tools": [{name, description, inputSchema}, ...],
     "calls": [{"name", "isError", "structuredContent", "text"}, ...]}

Usage:
    client.py PLAN.json -- COMMAND [ARG...]        (stdio)
    client.py PLAN.json --url URL [--token TOKEN]  (streamable HTTP)

PLAN.json is a list of {"name": tool, "arguments": {...}}.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def wire(model):
    """A pydantic model of the SDK as the JSON it travels as."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def drive(session, plan):
    init = await session.initialize()
    listed = await session.list_tools()
    calls = []
    for step in plan:
        result = wire(await session.call_tool(step["name"], step.get("arguments", {})))
        text = "".join(c.get("text", "") for c in result.get("content", []))
        calls.append(
            {
                "name": step["name"],
                "isError": bool(result.get("isError", False)),
                "structuredContent": result.get("structuredContent"),
                "text": text,
            }
        )
    return {
        "server": wire(init.server_info),
        "tools": [wire(t) for t in listed.tools],
        "calls": calls,
    }


async def over_stdio(plan, command):
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            return await drive(session, plan)


async def over_http(plan, url, token):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                return await drive(session, plan)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        plan = json.load(f)
    if argv[2] == "--":
        report = asyncio.run(over_stdio(plan, argv[3:]))
    elif argv[2] == "--url":
        token = argv[5] if len(argv) > 5 and argv[4] == "--token" else None
        report = asyncio.run(over_http(plan, argv[3], token))
    else:
        sys.exit(__doc__)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
