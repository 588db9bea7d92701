// A scripted MCP client built on the official TypeScript SDK
// (@modelcontextprotocol/sdk), for vial's end-to-end tests. It starts
// `vial serve` over stdio, declares elicitation when asked to, answers
// every approval request as the scenario says, runs the scenario's steps
// and prints one JSON line per step.
//
//   node client.cjs SCENARIO_JSON
//
// SCENARIO: {"command": "...", "args": [...], "env": {...},
//            "elicit": "none" | "accept" | "decline" | "cancel" | "no" | "sleep:MS",
//            "steps": [{"tool": "...", "args": {...}, "raw": {...extra params}}]}
// The SDK is found under $VIAL_TEST_MCP_SERVERS/node_modules.
'use strict';
const path = require('node:path');
const modules = process.env.VIAL_TEST_MCP_SERVERS;
const req = require('node:module').createRequire(path.join(modules, 'index.js'));
const { Client } = req('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = req('@modelcontextprotocol/sdk/client/stdio.js');
const { ElicitRequestSchema, CallToolResultSchema } = req('@modelcontextprotocol/sdk/types.js');

async function main() {
  const sc = JSON.parse(process.argv[2]);
  const caps = sc.elicit === 'none' ? {} : { elicitation: {} };
  const client = new Client({ name: 'ts-e2e', version: '1.0' }, { capabilities: caps });
  const asked = [];
  if (sc.elicit !== 'none') {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      const e = sc.elicit;
      if (e.startsWith('sleep:')) {
        await new Promise((r) => setTimeout(r, Number(e.slice(6))));
        return { action: 'accept', content: { approve: true } };
      }
      if (e === 'accept') return { action: 'accept', content: { approve: true } };
      if (e === 'no') return { action: 'accept', content: { approve: false } };
      return { action: e };
    });
  }
  const transport = new StdioClientTransport({
    command: sc.command, args: sc.args, env: { ...process.env, ...(sc.env || {}) }, stderr: 'inherit',
  });
  await client.connect(transport);
  const out = { protocol: transport._protocolVersion || null, tools: [], steps: [] };
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  for (const step of sc.steps || []) {
    const before = asked.length;
    const start = Date.now();
    let res;
    try {
      if (step.raw) {
        res = await client.request({ method: 'tools/call', params: { name: step.tool, arguments: step.args || {}, ...step.raw } },
          CallToolResultSchema, { timeout: 120000 });
      } else {
        res = await client.callTool({ name: step.tool, arguments: step.args || {} }, undefined, { timeout: 120000 });
      }
      const text = (res.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      out.steps.push({ tool: step.tool, isError: !!res.isError, text, asked: asked.slice(before), ms: Date.now() - start });
    } catch (err) {
      out.steps.push({ tool: step.tool, error: String(err && err.message || err), asked: asked.slice(before), ms: Date.now() - start });
    }
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => { process.stderr.write('client.cjs: ' + (err && err.stack || err) + '\n'); process.exit(1); });
