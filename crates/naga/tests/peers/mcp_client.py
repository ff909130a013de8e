"""An MCP client nobody here wrote: the official Python SDK (`mcp` on PyPI,
installed by .ci/run into target/test-peers/venv). Run by tests/mcp_face.rs:

    python mcp_client.py <mcp-url> <instruction>

Lists naga's tools and calls `echo` (without the Tasks extension: the
answer waits for the task's end); prints one JSON line."""

import json
import sys

import anyio
from mcp.client.client import Client


async def main(url: str, instruction: str) -> None:
    async with Client(url) as client:
        tools = await client.list_tools()
        result = await client.call_tool("echo", {"instruction": instruction})
        print(json.dumps({
            "tools": [t.name for t in tools.tools],
            "is_error": result.is_error,
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
        }, ensure_ascii=False))


anyio.run(main, sys.argv[1], sys.argv[2])
