// The RPC engine's exports (re-exported by ../index.ts). Files: see connection.ts's header.
export {
  localCapability,
  nullCapability,
  brokenCapability,
  promiseCapability,
  writeCap,
  readCap,
} from "./capability.js";
export type {
  Server,
  IncomingCall,
  Capability,
  Request,
  PendingCall,
  Response,
  Struct,
  StructCtor,
} from "./capability.js";
export { RpcConnection, DEFAULT_MAX_INCOMING_CALLS } from "./connection.js";
export type { RpcConnectionOptions, RpcStats } from "./connection.js";
