/**
 * The RPC engine's public exports (re-exported by the package's index.ts). Owns nothing; the
 * files and what each owns: connection.ts's header and docs/rpc.md.
 *
 * Threading: n/a (re-exports; every object belongs to the thread that created it).
 */
export { dispatchPending, localCapability, serverHolders } from "./local.js";
export { capabilityShared, DirectCall } from "./client.js";
export type { FlatRead } from "./hook.js";
export {
  nullCapability,
  brokenCapability,
  promiseCapability,
  writeCap,
  readCap,
  isCapabilityPointer,
} from "./capability.js";
export { peekLocalServer, peekSameCap } from "./cap-peek.js";
export type {
  Server,
  FlatParamsReader,
  IncomingCall,
  Capability,
  Request,
  PendingCall,
  Response,
  Struct,
  StructCtor,
} from "./types.js";
export { RpcConnection, DEFAULT_MAX_INCOMING_CALLS } from "./connection.js";
export type { RpcConnectionOptions, RpcStats } from "./connection.js";
export type { MessageDescriber } from "./core.js";
