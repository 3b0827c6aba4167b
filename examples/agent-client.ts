/**
 * An agent using the Writ SDK: a task token from its private key (RFC 7523), one
 * authorized action (waiting for a person's approval when policy asks for one), the
 * outcome reported, the task completed.
 *
 *   writ agent keygen --out agent.key.json            # then `writ agent register ... --key agent.key.json`
 *   TASK=$(writ task create ... | jq -r .id)
 *   node --import tsx examples/agent-client.ts --url http://127.0.0.1:8080 \
 *     --agent spiffe://acme.test/agent/billing --key agent.key.json --task "$TASK" \
 *     --tool github.create_issue --audience https://tools.example/github --args '{"repo":"acme/api"}' \
 *     [--resource repo:acme/api] [--destination api.github.com]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { WritAgentClient } from '@writ/sdk';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.WRIT_URL ?? 'http://127.0.0.1:8080' },
    agent: { type: 'string' },
    key: { type: 'string' },
    task: { type: 'string' },
    tool: { type: 'string' },
    audience: { type: 'string' },
    args: { type: 'string', default: '{}' },
    resource: { type: 'string' },
    destination: { type: 'string' },
    complete: { type: 'boolean', default: false },
  },
});
if (!values.agent || !values.key || !values.task || !values.tool || !values.audience) {
  console.error('usage: agent-client.ts --agent ID --key FILE --task ID --tool NAME --audience AUD [--args JSON] [--resource R] [--destination D] [--url URL] [--complete]');
  process.exit(2);
}

const agent = new WritAgentClient({
  url: values.url!,
  agentId: values.agent,
  taskId: values.task,
  key: { jwk: JSON.parse(readFileSync(values.key, 'utf8')) },
});

const decision = await agent.authorizeAndWait(
  // a task whose scope lists resources or destinations needs every action to name them
  {
    tool: values.tool,
    arguments: JSON.parse(values.args!),
    audience: values.audience,
    ...(values.resource ? { resource: values.resource } : {}),
    ...(values.destination ? { destination: values.destination } : {}),
  },
  { timeoutMs: 60_000 },
);
console.log(JSON.stringify(decision, null, 2));
if (decision.decision === 'allow') {
  // ... call the tool with decision.action_token (header `Writ-Action-Token`, or MCP `_meta["writ/action_token"]`) ...
  await agent.reportOutcome(decision.decision_id, 'succeeded', 'example run');
}
if (values.complete) await agent.complete();
