/**
 * Readable views of a memory transport's wire log.
 *
 * Threading: loop thread.
 */

import type { MemoryTransport } from "@multiprocess-ts/capnp";

/** The rpc.capnp message kinds sent on `t` so far, `which` or `which:variant` (e.g. "return:results"). */
export function wireKinds(t: MemoryTransport): string[] {
  return t.wireLog.map((e) => (e.variant ? `${e.which}:${e.variant}` : e.which));
}
