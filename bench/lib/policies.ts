/**
 * Policy sets for the benchmarks. `POLICIES_20` is a realistic 20-policy set, valid
 * against WRIT_SCHEMA (strict), exercising what real sets use: tool groups, agent
 * groups, single tools, resources, destinations, time, usage, delegation, approval,
 * break-glass and argument tags. `BENCH_ACTION` is allowed by it (the allow path is
 * the one the targets are about: Cedar + durable audit + token sign).
 */

export const BENCH_AGENT = {
  id: 'spiffe://acme.test/agent/billing',
  name: 'billing',
  labels: ['billing', 'reporting'],
};

export const BENCH_SCOPE = {
  tools: ['github.*', 'billing.*', 'slack.post_message'],
  resources: ['repo:acme/*', 'invoice:*', 'channel:#billing'],
  destinations: ['api.github.com', 'billing.acme.test', 'slack.com'],
};

/** The allowed action every authorize benchmark asks for (with a varying title). */
export function benchAction(i: number) {
  return {
    tool: 'github.create_issue',
    arguments: { repo: 'acme/api', title: `Weekly billing report #${i}`, labels: ['report', 'billing'], priority: 2 },
    audience: 'https://tools.example/github',
    resource: 'repo:acme/api',
    destination: 'api.github.com',
  };
}

export const POLICIES_20 = `
@id("github-read-acme")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"github")
when { context has resource && context.resource like "repo:acme/*" && resource.name like "github.get_*" };

@id("github-issues-for-reporting")
permit (principal in Writ::AgentGroup::"reporting", action == Writ::Action::"call", resource == Writ::Tool::"github.create_issue")
when {
  context has resource && context.resource like "repo:acme/*" &&
  context has destination && context.destination == "api.github.com" &&
  context.args.hasTag("title") && context.usage.actions_left > 0
};

@id("github-write-devops")
permit (principal in Writ::AgentGroup::"devops", action == Writ::Action::"call", resource in Writ::ToolGroup::"github")
when { context has resource && context.resource like "repo:acme/*" };

@id("billing-read")
permit (principal in Writ::AgentGroup::"billing", action == Writ::Action::"call", resource in Writ::ToolGroup::"billing")
when { resource.name like "billing.read*" || resource.name like "billing.list*" };

@id("billing-invoice-write-business-hours")
permit (principal in Writ::AgentGroup::"billing", action == Writ::Action::"call", resource == Writ::Tool::"billing.create_invoice")
when { context.time.hour_utc >= 7 && context.time.hour_utc < 19 && context.time.weekday >= 1 && context.time.weekday <= 5 };

@id("slack-post-own-channels")
permit (principal, action == Writ::Action::"call", resource == Writ::Tool::"slack.post_message")
when { context.args.hasTag("channel") && principal.labels.contains("billing") && context.args.getTag("channel") like "#billing*" };

@id("payments-need-approval")
@approvals("2")
@four_eyes("true")
permit (principal in Writ::AgentGroup::"billing", action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };

@id("search-anyone")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"search");

@id("break-glass-devops")
permit (principal in Writ::AgentGroup::"devops", action == Writ::Action::"call", resource)
when { context.break_glass };

@id("email-internal")
permit (principal in Writ::AgentGroup::"support", action == Writ::Action::"call", resource == Writ::Tool::"email.send")
when { context.args.hasTag("to") && context.args.getTag("to") like "*@acme.test" };

@id("deny-quarantined-agents")
forbid (principal in Writ::AgentGroup::"quarantined", action, resource);

@id("deny-blocked-tools")
forbid (principal, action == Writ::Action::"call", resource)
when { resource.labels.contains("blocked") };

@id("deny-large-payments")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount_cents") && context.num_args.getTag("amount_cents") > 1000000 };

@id("deny-repo-deletion")
forbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"github.delete_repo");

@id("deny-force-push")
forbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"github.push")
when { context.args.hasTag("force") && context.args.getTag("force") == "true" };

@id("deny-unknown-destinations")
forbid (principal, action == Writ::Action::"call", resource)
when {
  context has destination &&
  !(["api.github.com", "billing.acme.test", "slack.com", "search.acme.test", "smtp.acme.test"].contains(context.destination))
};

@id("deny-deep-delegation")
forbid (principal, action == Writ::Action::"call", resource)
when { context.delegation.depth > 3 };

@id("deny-weekend-deploys")
forbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"deploy.production")
when { context.time.weekday == 0 || context.time.weekday == 6 };

@id("deny-interns-payments")
forbid (principal in Writ::AgentGroup::"intern", action == Writ::Action::"call", resource in Writ::ToolGroup::"payments");

@id("deny-without-owner-for-billing-writes")
forbid (principal, action == Writ::Action::"call", resource == Writ::Tool::"billing.create_invoice")
unless { context.owner_present };
`;

/** Teams, services and operations of the large scenario. */
export const LARGE = { teams: 100, services: 20, opsPerService: 10 };

export function teamOf(agentIndex: number): number {
  return agentIndex % LARGE.teams;
}

export function largeAgentId(i: number): string {
  return `spiffe://acme.test/agent/a${i}`;
}

/**
 * A `count`-policy set in the shape of a large organisation: per-team permits on
 * single tools and tool groups (with resource and argument conditions), and one
 * forbid in ten. Policy i is about team i % teams, in round i / teams: round 0 lets
 * team t call `svc<t % services>.op0`, round 4 is a tool-group permit, round 9 a forbid.
 */
export function largePolicies(count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const team = i % LARGE.teams;
    const round = Math.floor(i / LARGE.teams);
    const svc = (team + round) % LARGE.services;
    const op = round % LARGE.opsPerService;
    const g = `Writ::AgentGroup::"team-${team}"`;
    if (round % 10 === 9) {
      out.push(`@id("p${i}")
forbid (principal in ${g}, action == Writ::Action::"call", resource == Writ::Tool::"svc${svc}.op${op}")
when { context.args.hasTag("mode") && context.args.getTag("mode") == "destructive-${i}" };`);
    } else if (round % 10 === 4) {
      out.push(`@id("p${i}")
permit (principal in ${g}, action == Writ::Action::"call", resource in Writ::ToolGroup::"svc${svc}")
when { context has resource && context.resource like "proj:team-${team}/*" && context.time.hour_utc >= 0 };`);
    } else {
      out.push(`@id("p${i}")
permit (principal in ${g}, action == Writ::Action::"call", resource == Writ::Tool::"svc${svc}.op${op}")
when { context has resource && context.resource like "proj:team-${team}/*" && context.usage.actions_left > 0 };`);
    }
  }
  return out;
}

export function largePolicySet(count: number): string {
  return largePolicies(count).join('\n\n');
}

/** The policies of the large set that name team `team` (a per-team split of the set). */
export function largeTeamPolicies(count: number, team: number): Record<string, string> {
  const parts: Record<string, string> = {};
  largePolicies(count).forEach((text, i) => {
    if (i % LARGE.teams === team) parts[`p${i}`] = text;
  });
  return parts;
}

/** An action that the large set allows for agent `i` (team t -> svc t % services, op 0). */
export function largeAction(agentIndex: number, n: number) {
  const team = teamOf(agentIndex);
  const svc = team % LARGE.services;
  return {
    tool: `svc${svc}.op0`,
    arguments: { item: `item-${n}`, mode: 'normal', count: n % 100 },
    audience: `https://tools.example/svc${svc}`,
    resource: `proj:team-${team}/main`,
  };
}
