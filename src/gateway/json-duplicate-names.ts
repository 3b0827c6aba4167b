/**
 * A name that appears twice in one object of a JSON text, or null. RFC 8259 §4: "When
 * the names within an object are not unique, the behavior of software that receives such
 * an object is unpredictable": `JSON.parse` (what policy is shown) keeps the last value,
 * other parsers the first (RapidJSON, gjson, jsonparser) or fail. The HTTP proxy forwards
 * a JSON body's bytes, so `{"amount": 99999, "amount": 5}` would be judged as 5 and paid
 * as 99999. Names are compared decoded (`"\u0061mount"` is `amount`).
 *
 * `text` must already be valid JSON (it is parsed first): this only walks its structure.
 * One pass, no recursion (depth is not limited here).
 */
export function duplicateJsonName(text: string): string | null {
  // per open container: the names seen (an object) or null (an array)
  const stack: (Set<string> | null)[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) stack.push(new Set());
    else if (c === 0x5b /* [ */) stack.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const names = stack.at(-1);
      if (!names) continue;
      // a string in an object is a name when a `:` follows it (else it is a value)
      let j = i + 1;
      while (j < n && isJsonSpace(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) !== 0x3a /* : */) continue;
      const name = escaped ? (JSON.parse(text.slice(start, i + 1)) as string) : text.slice(start + 1, i);
      if (names.has(name)) return name;
      names.add(name);
    }
  }
  return null;
}

/** RFC 8259 §2 whitespace: space, tab, line feed, carriage return */
function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
