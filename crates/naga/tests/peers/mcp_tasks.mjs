// An MCP client nobody here wrote: the official TypeScript SDK
// (@modelcontextprotocol/client) with the official Tasks extension
// (@modelcontextprotocol/ext-tasks), on protocol 2026-07-28. Run by
// tests/mcp_face.rs from target/test-peers (where .ci/run installs them):
//   node mcp_tasks.mjs <mcp-url> tools
//   node mcp_tasks.mjs <mcp-url> start <delay_ms>      prints the task's reference
//   node mcp_tasks.mjs <mcp-url> resume <reference>    prints the outcome
//   node mcp_tasks.mjs <mcp-url> cancel <delay_ms>     prints the outcome
// With NAGA_TOKEN set, every request carries it as a bearer token; with
// NAGA_MCP_VERSION=2025-11-25 it speaks that version's experimental tasks
// instead. Prints one JSON line; exits non-zero saying what failed.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createTaskSessionFromClient } from "@modelcontextprotocol/ext-tasks/client";

const [url, command, arg] = process.argv.slice(2);
const VERSION = process.env.NAGA_MCP_VERSION ?? "2026-07-28";
const MODERN = VERSION === "2026-07-28";
const info = { name: "naga-test-client", version: "1.0.0" };
const auth = process.env.NAGA_TOKEN ? { authorization: `Bearer ${process.env.NAGA_TOKEN}` } : {};

const client = new Client(info, { versionNegotiation: { mode: MODERN ? { pin: VERSION } : "legacy" } });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: auth } }));

// The raw JSON-RPC path the Tasks extension asks its host for on 2026-07-28
// (the SDK's own codecs do not carry task results yet): one POST per
// request, the answer read from JSON or from the event stream.
let nextId = 1;
async function rawDispatch(request, options) {
  const body = { jsonrpc: "2.0", id: `raw-${nextId++}`, ...request };
  const headers = {
    ...auth,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": VERSION,
    "mcp-method": body.method,
  };
  const name = body.params?.name ?? body.params?.taskId;
  if (name !== undefined) headers["mcp-name"] = String(name);
  const resp = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: options?.signal });
  const text = await resp.text();
  const data = text.trimStart().startsWith("{")
    ? text
    : text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).find((d) => d.includes('"jsonrpc"'));
  if (data === undefined) throw new Error(`HTTP ${resp.status} without a JSON-RPC answer: ${text.slice(0, 200)}`);
  const answer = JSON.parse(data);
  return answer.error ? { kind: "error", error: answer.error } : { kind: "result", result: answer.result };
}

const session = createTaskSessionFromClient(client, MODERN
  ? {
      endpointId: "naga",
      rawDispatch,
      v2RequestFraming: { protocolVersion: VERSION, clientInfo: info, clientCapabilities: {} },
    }
  : { endpointId: "naga" });

const call = (delayMs) =>
  session.callTool("echo", { instruction: "来自 MCP 客户端", parameters: { delay_ms: Number(delayMs) } },
    { task: { preference: "prefer" } });

let out;
try {
  switch (command) {
    case "tools":
      out = { tools: (await client.listTools()).tools.map((t) => t.name) };
      break;
    case "start": {
      const execution = await call(arg);
      if (execution.kind !== "task") throw new Error(`naga answered ${execution.kind}, not a task`);
      let reference;
      await execution.handoff((r) => { reference = r; });
      out = { reference };
      break;
    }
    case "resume": {
      const execution = await session.resumeTask(JSON.parse(arg));
      const { outcome } = await execution.settle();
      out = { outcome };
      break;
    }
    case "cancel": {
      const execution = await call(arg);
      if (execution.kind !== "task") throw new Error(`naga answered ${execution.kind}, not a task`);
      await session.task(execution.handle.taskId).cancel();
      const { outcome } = await execution.settle();
      out = { taskId: execution.handle.taskId, outcome };
      break;
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
} catch (e) {
  console.error(e?.stack ?? String(e));
  process.exit(1);
} finally {
  await session.close().catch(() => {});
}
console.log(JSON.stringify(out));
process.exit(0);
