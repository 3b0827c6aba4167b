/**
 * The Cedar schema that every policy set is validated against (strict mode).
 *
 * - principal: `Writ::Agent`, a member of `Writ::AgentGroup::"<label>"` per label.
 * - resource: `Writ::Tool` named by the tool, a member of `Writ::ToolGroup::"<server>"`
 *   (the part before the first dot: `github` for `github.create_issue`).
 * - action: `Writ::Action::"call"`.
 * - context: everything Writ knows at request time. Arguments are entity tags:
 *   `context.args` holds every scalar leaf as a string (nested keys joined with `.`),
 *   `context.num_args` the integer leaves as Longs.
 */
export const WRIT_SCHEMA = `
namespace Writ {
  entity AgentGroup;
  entity Agent in [AgentGroup] = { name: String, labels: Set<String> };
  entity ToolGroup;
  entity Tool in [ToolGroup] = { name: String, server: String, labels: Set<String> };
  entity Arguments tags String;
  entity NumericArguments tags Long;

  type TaskInfo = {
    id: String,
    intent: String,
    owner: String,
    depth: Long,
    root_id: String,
    root_owner: String,
    root_intent: String,
  };

  action "call" appliesTo {
    principal: [Agent],
    resource: [Tool],
    context: {
      task: TaskInfo,
      audience: String,
      resource?: String,
      destination?: String,
      args: Arguments,
      num_args: NumericArguments,
      args_digest: String,
      usage: { actions_used: Long, actions_left: Long, max_actions: Long },
      time: { epoch_seconds: Long, hour_utc: Long, weekday: Long },
      approval: { granted: Bool, approvers: Long },
      break_glass: Bool,
      owner_present: Bool,
      delegation: { depth: Long, chain: Set<String> },
    }
  };
}
`;

/**
 * The policy a new store starts with: every action inside the task's scope is
 * allowed (the scope is already a hard bound checked before policy), except the
 * examples below, which show the shape of a real policy.
 */
export const DEFAULT_POLICY = `// Writ default policy. Replace with PUT /v1/policies or \`writ policy set FILE\`.
// The task scope (tools, resources, destinations) and the action budget are checked
// before policy; policy decides within them.

@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource);

// Agents labelled "quarantined" may do nothing.
@id("deny-quarantined-agents")
forbid (principal in Writ::AgentGroup::"quarantined", action, resource);

// Tools labelled "blocked" by an operator are never called.
@id("deny-blocked-tools")
forbid (principal, action == Writ::Action::"call", resource)
when { resource.labels.contains("blocked") };
`;
