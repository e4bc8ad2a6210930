/**
 * Applies a JSON merge patch (RFC 7396) to `target` and returns the result; neither argument
 * changes. Members of a patch object replace the target's, null removes a member, nested
 * objects merge recursively, and a patch that is not an object replaces the target as a whole.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);

  const result: Record<string, unknown> = isPlainObject(target) ? structuredClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else {
      // defineProperty rather than assignment, so that a "__proto__" member stays a plain member.
      const merged = applyMergePatch(Object.hasOwn(result, key) ? result[key] : undefined, value);
      Object.defineProperty(result, key, { value: merged, enumerable: true, writable: true, configurable: true });
    }
  }
  return result;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
