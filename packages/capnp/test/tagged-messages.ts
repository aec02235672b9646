// Tiny tagged messages for the stream transport's tests: one segment whose first word carries a
// number, so a test can tell which message arrived, in which order, without an RPC schema.
// Threading: the test's thread.
import { deferred } from "../dist/errors.js";
import type { Transport } from "../dist/transport.js";

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

/** The receiving side: a transport recording the tags it reads, in order. */
export function recorder(t: Transport): { tags: number[]; waitFor(n: number): Promise<void>; closed: Promise<Error | undefined> } {
  const tags: number[] = [];
  const closed = deferred<Error | undefined>();
  let waiter: { n: number; resolve: () => void } | undefined;
  t.start({
    message(segs) {
      const s = segs[0]!;
      tags.push(new DataView(s.buffer, s.byteOffset, s.byteLength).getUint32(0, true));
      if (waiter !== undefined && tags.length >= waiter.n) waiter.resolve();
    },
    closed: (e) => closed.resolve(e),
  });
  return {
    tags,
    closed: closed.promise,
    waitFor(n) {
      if (tags.length >= n) return Promise.resolve();
      const d = deferred<void>();
      waiter = { n, resolve: d.resolve };
      return Promise.race([d.promise, closed.promise.then((e) => Promise.reject(e ?? new Error("closed early")))]);
    },
  };
}
