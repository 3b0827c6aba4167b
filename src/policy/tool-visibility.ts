/**
 * Remembers which tools a task could be allowed to call (`POST /v1/tools/visible`), per
 * task and policy version. A partial evaluation costs 0.5 to 3 ms; a gateway asks the
 * same question for the same tools on every `tools/list`. An answer is reused only
 * while the task, the policy version and the tool's labels are those it was computed
 * for (the task's scope and agent never change); anything else is computed again.
 */
export class ToolVisibilityCache {
  private readonly entries = new Map<string, Map<string, { labels: string; visible: boolean }>>();

  /** `maxTasks`: how many task/version pairs are kept; past it the oldest goes. */
  constructor(private readonly maxTasks = 1000) {}

  private key(taskId: string, policyVersion: string): string {
    return `${taskId}\u0000${policyVersion}`;
  }

  get(taskId: string, policyVersion: string, tool: string, labels: string[]): boolean | undefined {
    const hit = this.entries.get(this.key(taskId, policyVersion))?.get(tool);
    return hit && hit.labels === labels.join('\u0000') ? hit.visible : undefined;
  }

  set(taskId: string, policyVersion: string, tool: string, labels: string[], visible: boolean): void {
    const key = this.key(taskId, policyVersion);
    let m = this.entries.get(key);
    if (!m) {
      if (this.entries.size >= this.maxTasks) this.entries.delete(this.entries.keys().next().value!);
      m = new Map();
      this.entries.set(key, m);
    }
    m.set(tool, { labels: labels.join('\u0000'), visible });
  }
}
