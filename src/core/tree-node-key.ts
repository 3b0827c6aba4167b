/** Map key of a tree node in `getAuditTreeNodes` results. */
export function treeNodeKey(level: number, index: number): string {
  return `${level}/${index}`;
}
