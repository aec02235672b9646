// Public API of @multiprocess-ts/capnp. Hand-curated: add named exports as modules land.
export {
  RpcError,
  DisconnectedError,
  ProtocolError,
  LimitError,
  CanceledError,
  toRpcError,
  deferred,
} from "./errors.js";
export type { ErrorKind, RpcErrorOptions, Deferred } from "./errors.js";
