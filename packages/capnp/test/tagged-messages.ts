// Tiny tagged messages for the stream transport's tests: one segment whose first word carries a
// number, so a test can tell which message arrived, in which order, without an RPC schema.
// Threading: the test's thread.

/** A one-segment message of `words` words, first word = tag. */
export function msg(tag: number, words = 1): Uint8Array[] {
  const b = new Uint8Array(words * 8);
  new DataView(b.buffer).setUint32(0, tag, true);
  return [b];
}

/** The tag {@link msg} put in a message's first word. */
export function tagOf(m: Uint8Array[]): number {
  const s = m[0]!;
  return new DataView(s.buffer, s.byteOffset, s.byteLength).getUint32(0, true);
}
