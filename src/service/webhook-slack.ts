import type { AuditEntry } from '../core/types.js';

/**
 * The Slack-compatible body of a webhook (`WRIT_WEBHOOK_FORMAT=slack`): what a Slack
 * incoming webhook (and Mattermost, Rocket.Chat, Teams' Slack-compatible connectors) posts
 * as a message: `text` (the notification and fallback) and Block Kit `blocks`
 * (api.slack.com/reference/block-kit/blocks: `section` with `mrkdwn` text, at most 3000
 * characters each; `context`; `actions` with a URL `button`).
 *
 * Everything that comes from a caller (tool names, arguments, justifications, comments) is
 * escaped as Slack asks (`&`, `<`, `>`: api.slack.com/reference/surfaces/formatting#escaping),
 * so no argument can mention `<!channel>` or forge a link. Arguments are the masked ones
 * (src/audit/mask-arguments.ts), never more than the audit log keeps.
 */
export interface SlackContext {
  /** the public URL of Writ (its issuer), for the command that approves */
  issuer: string;
  /** `https://…/approvals/{approval_id}`: a link to approve at, when an operator set one */
  approvalUrl?: string;
  /** an approval request's arguments, masked; undefined when the audit log keeps only their digest */
  arguments?: Record<string, unknown>;
}

export interface SlackMessage {
  text: string;
  blocks: Record<string, unknown>[];
}

const SECTION_MAX = 3000;

/** Slack's three control characters, escaped (the message is mrkdwn). */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** An inline code span of caller text: escaped, no backticks to break out of it. */
function code(v: unknown): string {
  return `\`${slackEscape(clip(String(v ?? '-'), 200)).replace(/`/g, "'")}\``;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export function slackMessage(e: AuditEntry, ctx: SlackContext): SlackMessage {
  const d = e.data as Record<string, unknown>;
  const ids = [e.taskId ? `task ${code(e.taskId)}` : '', e.agentId ? `agent ${code(e.agentId)}` : '', `by ${code(e.actor)}`].filter(Boolean).join(' · ');
  const context = { type: 'context', elements: [{ type: 'mrkdwn', text: clip(`${ids} · ${code(e.type)} · audit #${e.seq}`, SECTION_MAX) }] };
  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text: clip(text, SECTION_MAX) } });

  if (e.type === 'approval.requested') {
    const id = str(d.approval_id) ?? '';
    const tool = str(d.tool) ?? '?';
    const args =
      ctx.arguments === undefined
        ? `_arguments not kept (WRIT_AUDIT_ARGS=digest); digest_ ${code(d.args_digest)}`
        : `\`\`\`${clip(slackEscape(JSON.stringify(ctx.arguments, null, 2)).replace(/```/g, "'''"), SECTION_MAX - 100)}\`\`\``;
    const quorum = typeof d.quorum === 'number' && d.quorum > 1 ? ` (${d.quorum} approvals needed${d.four_eyes ? ', four eyes' : ''})` : d.four_eyes ? ' (four eyes)' : '';
    const blocks: Record<string, unknown>[] = [
      section(`:raised_hand: *Approval requested*${quorum}: tool ${code(tool)}${str(d.audience) ? ` for ${code(d.audience)}` : ''}`),
      section(`*Arguments* (masked)\n${args}`),
      section(`Approve: ${code(`writ approvals approve ${id} --url ${ctx.issuer}`)}\nDeny: ${code(`writ approvals deny ${id} --url ${ctx.issuer}`)}`),
    ];
    const link = ctx.approvalUrl && id ? ctx.approvalUrl.replaceAll('{approval_id}', encodeURIComponent(id)) : undefined;
    if (link) blocks.push({ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Review' }, url: link, style: 'primary' }] });
    blocks.push(context);
    return { text: `Approval requested: ${slackEscape(clip(tool, 200))} (${slackEscape(id)})${link ? ` ${link}` : ''}`, blocks };
  }
  if (e.type === 'approval.reviewed') {
    const verdict = str(d.verdict) ?? '?';
    const status = str(d.status) ?? '?';
    const comment = str(d.comment) ? `\n> ${slackEscape(clip(String(d.comment), 500)).replace(/\n/g, '\n> ')}` : '';
    return {
      text: `Approval ${slackEscape(String(d.approval_id ?? ''))} ${slackEscape(verdict)} by ${slackEscape(String(d.approver ?? ''))}: ${slackEscape(status)}`,
      blocks: [section(`${verdict === 'approve' ? ':white_check_mark:' : ':no_entry:'} *Approval ${code(d.approval_id)} reviewed*: ${code(verdict)} by ${code(d.approver)}, now ${code(status)}${comment}`), context],
    };
  }
  if (e.type.startsWith('break_glass.')) {
    const what = e.type.slice('break_glass.'.length);
    const just = str(d.justification) ? `\n> ${slackEscape(clip(String(d.justification), 1000)).replace(/\n/g, '\n> ')}` : '';
    const until = typeof d.ends_at === 'number' ? ` until ${new Date(d.ends_at).toISOString()}` : '';
    return {
      text: `Break-glass ${slackEscape(what)}: ${slackEscape(String(d.break_glass_id ?? ''))}`,
      blocks: [section(`:rotating_light: *Break-glass ${slackEscape(what)}* ${code(d.break_glass_id)}${until}${just}`), context],
    };
  }
  if (e.type === 'task.revoked') {
    const why = str(d.reason) ? ` (${code(d.reason)})` : '';
    return { text: `Task ${slackEscape(e.taskId ?? '')} revoked`, blocks: [section(`:octagonal_sign: *Task ${code(e.taskId)} revoked*${why}: its tokens stop working at once`), context] };
  }
  return { text: `Writ: ${slackEscape(e.type)}`, blocks: [section(`*${slackEscape(e.type)}*`), context] };
}
