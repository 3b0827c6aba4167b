/**
 * What the MCP gateway itself spends per call, apart from its decision: `McpGateway` with
 * an authorizer that allows at once, beside the pass-through proxy (the same SDK stack),
 * both in this process behind an in-memory MCP client, both calling the same stdio echo
 * upstream (a process of its own). The CPU of this process per call, each variant in
 * interleaved rounds:
 *
 *   passthrough        the proxy's work (and the client's, the same for both)
 *   gateway_instant    the gateway's, its decision answered at once
 *   gateway_idle_1ms   the same, its decision answered after a 1 ms timer: the process
 *                      goes idle mid-call, as it does while Writ decides
 *
 * gateway_instant - passthrough is the gateway's own work on a call (pin check, argument
 * checks, redaction, outcome bookkeeping); gateway_idle_1ms - gateway_instant is what
 * going idle and waking up mid-call costs the same work (caches and branch predictors
 * cold after the wait), which any gateway waiting on a remote decision pays.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Authorizer } from '../../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../../src/gateway/config.js';
import { guardRequestIds } from '../../src/gateway/jsonrpc-guard.js';
import { silentLog } from '../../src/gateway/log.js';
import { McpGateway } from '../../src/gateway/mcp-gateway.js';
import { approveCatalogs, emptyPins, writePinFile } from '../../src/gateway/pins.js';
import { connectUpstream, passthroughServer } from './mcp-passthrough.js';

export interface GatewayOwnWork {
  calls_per_variant: number;
  /** CPU of this process per call, us */
  cpu_us_per_call: { passthrough: number; gateway_instant: number; gateway_idle_1ms: number };
  /** gateway_instant - passthrough */
  own_work_us: number;
  /** gateway_idle_1ms - gateway_instant */
  resume_after_idle_us: number;
}

/** A task token's shape (the gateway reads its `cnf` only to choose how to present it); never verified here. */
const TOKEN = `${Buffer.from('{"alg":"EdDSA"}').toString('base64url')}.${Buffer.from('{"sub":"a","txn":"t"}').toString('base64url')}.c2ln`;

function instantAuthorizer(delayMs: () => number): Authorizer {
  let n = 0;
  return {
    mode: 'in-process',
    task: async () => ({ taskId: 't', agentId: 'a', scope: null }),
    authorize: async () => {
      const ms = delayMs();
      if (ms > 0) await new Promise((ok) => setTimeout(ok, ms));
      return { decision: 'allow', decision_id: `dec_${n++}`, action_token: 'at', expires_in: 60 };
    },
    reportOutcome: async () => undefined,
    approval: async () => {
      throw new Error('no approvals here');
    },
    close: async () => undefined,
  };
}

async function clientOf(server: Server, guard: boolean): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  if (guard) guardRequestIds(serverSide);
  const client = new Client({ name: 'bench', version: '1.0.0' }, { capabilities: {} });
  await client.connect(clientSide);
  return client;
}

export async function measureGatewayOwnWork(opts: { echoCmd: string[]; iterations: number; warmup: number; rounds?: number }): Promise<GatewayOwnWork> {
  const dir = mkdtempSync(join(tmpdir(), 'writ-bench-own-'));
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const echoTool = { name: 'echo', description: 'Echoes the text back.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } };
    const pinsFile = join(dir, 'pins.json');
    writePinFile(pinsFile, approveCatalogs(emptyPins(), new Map([['bench', [echoTool]]])).pins);
    const [command, ...args] = opts.echoCmd;
    const config = parseGatewayConfig(
      { writ: { url: 'http://writ.invalid' }, pins_file: pinsFile, upstreams: [{ name: 'bench', transport: 'stdio', command, args, destination: 'stdio:local' }] },
      join(dir, 'gateway.json'),
    );
    let delay = 0;
    const gateway = new McpGateway({ config, authorizer: instantAuthorizer(() => delay), log: silentLog });
    await gateway.start();
    closers.push(() => gateway.close());
    const gw = await clientOf(gateway.createServer(() => TOKEN), true);
    closers.push(() => gw.close());
    const upstream = await connectUpstream({ cmd: opts.echoCmd });
    closers.push(() => upstream.close());
    const pass = await clientOf(passthroughServer(upstream), false);
    closers.push(() => pass.close());

    const args_ = { text: 'benchmark payload' };
    const call = (c: Client, name: string) => async () => {
      const r = await c.callTool({ name, arguments: args_ });
      if (r.isError) throw new Error(`${name}: ${JSON.stringify(r.content)}`);
    };
    const variants = [
      { name: 'passthrough', delayMs: 0, run: call(pass, 'echo') },
      { name: 'gateway_instant', delayMs: 0, run: call(gw, 'bench.echo') },
      { name: 'gateway_idle_1ms', delayMs: 1, run: call(gw, 'bench.echo') },
    ] as const;
    for (const v of variants) {
      delay = v.delayMs;
      for (let i = 0; i < opts.warmup; i++) await v.run();
    }
    const rounds = opts.rounds ?? 10;
    const per = Math.max(1, Math.ceil(opts.iterations / rounds));
    const cpu = variants.map(() => 0);
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < variants.length; k++) {
        delay = variants[k]!.delayMs;
        const c0 = process.cpuUsage();
        for (let i = 0; i < per; i++) await variants[k]!.run();
        const c = process.cpuUsage(c0);
        cpu[k]! += c.user + c.system;
      }
    }
    const us = cpu.map((x) => Math.round(x / (per * rounds)));
    return {
      calls_per_variant: per * rounds,
      cpu_us_per_call: { passthrough: us[0]!, gateway_instant: us[1]!, gateway_idle_1ms: us[2]! },
      own_work_us: us[1]! - us[0]!,
      resume_after_idle_us: us[2]! - us[1]!,
    };
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
