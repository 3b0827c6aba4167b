/**
 * Tasks this instance ends (completed, revoked, their agent disabled, expired by its
 * sweep). The token service forgets the task tokens it verified; listeners (an embedded
 * gateway) close their sessions at once. Tasks ended through another instance are not
 * announced here (the gateway's periodic check finds them).
 */
export class TaskEndings {
  private readonly listeners = new Set<(taskIds: string[]) => void>();
  private readonly forgetters = new Set<() => void>();

  onTasksEnded(listener: (taskIds: string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `forget` runs on every change of task or agent state this instance makes (a cache of verified tokens). */
  onChange(forget: () => void): void {
    this.forgetters.add(forget);
  }

  /** A state change made here: caches forget, then the ended tasks are announced. */
  changed(taskIds: string[]): void {
    for (const f of this.forgetters) f();
    this.announce(taskIds);
  }

  /** Announces ended tasks (the sweep: nothing cached changes meaning). */
  announce(taskIds: string[]): void {
    if (taskIds.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(taskIds);
      } catch {
        // a listener's fault never fails the end
      }
    }
  }
}
