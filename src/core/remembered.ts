/**
 * `compute(value)` for a pure check of a short text, remembered in `answers`: at most 1,024
 * texts of up to 1,024 characters, cleared when full. For the checks every action asks
 * (its destination, its resource) at the edge and again in the pipeline.
 */
export function remembered(answers: Map<string, string | null>, value: string, compute: (v: string) => string | null): string | null {
  const hit = answers.get(value);
  if (hit !== undefined) return hit;
  const answer = compute(value);
  if (value.length <= 1024) {
    if (answers.size >= 1024) answers.clear();
    answers.set(value, answer);
  }
  return answer;
}
