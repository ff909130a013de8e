"""A client that asks naga's MCP face for more than the tool it calls,
through the official Python SDK (`mcp` on PyPI). Run by tests/mcp_face.rs:

    python mcp_hostile.py <mcp-url> <path>

Calls `echo` with arguments that name another agent (and a file for it to
write at <path>), `echo` without its required `instruction`, every agent
naga does not list, then a plain `echo`; prints one JSON line: the error
code (or the text) of each call."""

import json
import sys

import anyio
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

AGENTS = ["echo", "file_edit", "computer_control"]


async def outcome(client: Client, name: str, arguments: dict) -> object:
    try:
        result = await client.call_tool(name, arguments)
    except MCPError as e:
        return {"code": e.code, "message": e.message}
    return {"is_error": result.is_error,
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"]}


async def main(url: str, path: str) -> None:
    async with Client(url) as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        out = {"listed": listed}
        for key in ["tool_name", "task_type", "agentType"]:
            out[key] = await outcome(client, "echo", {
                "instruction": "written by echo?", key: "file_edit",
                "parameters": {"path": path, "content": "pwned", "operation": "write_file"}})
        out["no_instruction"] = await outcome(client, "echo", {})
        out["unlisted"] = {a: await outcome(client, a, {"instruction": "x"})
                           for a in AGENTS if a not in listed}
        out["plain"] = await outcome(client, "echo", {"instruction": "plain"})
        print(json.dumps(out, ensure_ascii=False))


anyio.run(main, sys.argv[1], sys.argv[2])
