import { auditLeafBytes } from '../core/audit-hash.js';
import type { AuditEntry } from '../core/types.js';

/**
 * The export format (`writ audit export --format jsonl`, JSON Lines):
 *   1. a header  {"format":"writ-audit-export@v1","origin",...}
 *   2. optionally {"prefix":{"size","prev_hash","nodes":[base64...]}} when the export
 *      does not start at the first entry: the compact range of the entries before it,
 *      so that roots can be recomputed (they are checked against signed checkpoints,
 *      so they need no trust of their own)
 *   3. signed checkpoints {"checkpoint":"<C2SP note>"} covering sizes within the export
 *   4. one line per entry: exactly its Merkle leaf bytes (RFC 8785 canonical JSON)
 */
export const EXPORT_FORMAT = 'writ-audit-export@v1';

export interface ExportHeader {
  format: typeof EXPORT_FORMAT;
  origin: string;
  /** the note verifier key Writ published; verification uses the key the investigator pins */
  verifier_key?: string;
  first_seq: number;
  last_seq: number;
  exported_at: string;
}

export interface ExportPrefix {
  size: number;
  prev_hash: string;
  nodes: string[];
}

export function entryLine(entry: AuditEntry): string {
  return auditLeafBytes(entry);
}

/**
 * OCSF API Activity (class 6003, category 6 Application Activity) for one audit entry.
 * Decisions map to `action_id`/`disposition_id` (allow 1/1 Allowed, deny 2/2 Blocked,
 * approval_required 2/.. treated as not allowed yet), the policy to `policy`, the agent
 * or operator to `actor`, the tool to `api.operation`, and the entry's chain and tree
 * position to `unmapped.writ` integrity fields.
 */
export function toOcsf(entry: AuditEntry, product: { version: string; origin: string }): Record<string, unknown> {
  const d = entry.data as Record<string, unknown>;
  const decision = typeof d.decision === 'string' ? d.decision : typeof d.effect === 'string' ? d.effect : null;
  const isDecision = entry.type.startsWith('decision') || decision !== null;
  // activity_id: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other. A tool call is "Other".
  const activityId = 99;
  const allowed = decision === 'allow';
  const actorIsAgent = entry.actor.startsWith('agent:') || (!entry.actor.startsWith('operator:') && entry.agentId !== null && entry.actor !== 'system');
  const user = actorIsAgent
    ? { uid: entry.agentId ?? entry.actor.replace(/^agent:/, ''), type: 'Service', type_id: 99 }
    : { uid: entry.actor, type: entry.actor === 'system' ? 'System' : 'User', type_id: entry.actor === 'system' ? 3 : 1 };
  const event: Record<string, unknown> = {
    category_uid: 6,
    category_name: 'Application Activity',
    class_uid: 6003,
    class_name: 'API Activity',
    activity_id: activityId,
    activity_name: entry.type,
    type_uid: 6003 * 100 + activityId,
    time: entry.ts,
    severity_id: entry.type.startsWith('break_glass') || entry.type.includes('refused') ? 3 : 1,
    status_id: isDecision ? (allowed ? 1 : 2) : 1,
    metadata: {
      version: '1.3.0',
      uid: `${product.origin}#${entry.seq}`,
      product: { name: 'Writ', vendor_name: 'Writ', version: product.version },
      log_name: product.origin,
      correlation_uid: entry.decisionId ?? entry.taskId ?? undefined,
    },
    actor: { user, app_name: 'writ' },
    api: { operation: typeof d.tool === 'string' ? d.tool : entry.type, service: { name: typeof d.audience === 'string' ? d.audience : 'writ' } },
    // OCSF requires a source endpoint; Writ records the agent identity, not its address.
    src_endpoint: { name: entry.agentId ?? entry.actor },
    cloud: { provider: 'writ' },
    unmapped: {
      writ: {
        seq: entry.seq,
        leaf_index: entry.seq - 1,
        prev_hash: entry.prevHash,
        hash: entry.hash,
        task_id: entry.taskId,
        decision_id: entry.decisionId,
        data: d,
      },
    },
  };
  if (isDecision && decision) {
    event.action_id = allowed ? 1 : 2; // 1 Allowed, 2 Denied
    event.action = allowed ? 'Allowed' : 'Denied';
    event.disposition_id = allowed ? 1 : decision === 'approval_required' ? 99 : 2; // 1 Allowed, 2 Blocked, 99 Other
    event.disposition = allowed ? 'Allowed' : decision === 'approval_required' ? 'Approval required' : 'Blocked';
  }
  if (typeof d.policy_version === 'string' || Array.isArray(d.policies)) {
    event.policy = {
      uid: Array.isArray(d.policies) ? (d.policies as unknown[]).join(',') : undefined,
      version: typeof d.policy_version === 'string' ? d.policy_version : undefined,
      name: 'writ-cedar',
    };
  }
  return JSON.parse(JSON.stringify(event));
}
