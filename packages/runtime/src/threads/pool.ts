/**
 * `makePool`: the public client call of `ThreadMap.makePool` (upstream proxy.capnp): asks the
 * peer to create `count` server Threads that serve calls whose `Context.thread` is unset (the
 * peer picks the least loaded one). Calls opt in per call or per client with the CallOptions
 * `thread: "pool"` (see proxy/call-options.ts and docs/usage.md).
 *
 * Owns: nothing (one call in flight). Threading: the loop thread of the connection.
 */
import { RpcError } from "@multiprocess-ts/capnp";
import type { Connection } from "../connection.js";
import { IpcCalledAfterDisconnectError } from "../errors.js";
import { THREAD_MAP_INTERFACE_ID, ThreadMapMethod, ThreadMap_makePool$Params } from "../types/proxy-capnp.js";

/**
 * Asks the peer of `target` (a Connection, or anything with a `$connection`, e.g. a generated
 * client) to make a pool of `count` Threads. Needs the peer's ThreadMap (exchanged by `construct`
 * or an `initThreadMap`-style call): otherwise rejects with an RpcError. A second call on the same
 * connection rejects with the peer's "makePool called on connection with existing pool".
 */
export async function makePool(target: Connection | { readonly $connection: Connection }, count: number): Promise<void> {
  const connection = "$connection" in target ? target.$connection : target;
  if (!Number.isInteger(count) || count < 1 || count > 0xffff_ffff) {
    throw new RangeError(`makePool: count must be a positive UInt32, got ${String(count)}`);
  }
  if (connection.state !== "open") throw new IpcCalledAfterDisconnectError(connection.signal.reason);
  const threadMap = connection.peerThreadMap;
  if (threadMap === null) {
    throw new RpcError("failed", "makePool: the peer gave us no ThreadMap (exchange ThreadMaps first: construct or initThreadMap)");
  }
  const req = threadMap.newCall(THREAD_MAP_INTERFACE_ID, ThreadMapMethod.makePool, ThreadMap_makePool$Params);
  req.params.count = count;
  const response = await req.send();
  response.close();
}
