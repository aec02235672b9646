// Public API of @multiprocess-ts/capnp. Hand-curated: add named exports as modules land.
// Threading: re-exports only; each module's header says on which thread it runs (connections and
// transports on the loop thread that created them, codecs and errors on any thread).
export {
  RpcError,
  DisconnectedError,
  ProtocolError,
  LimitError,
  CanceledError,
  RemoteError,
  toRpcError,
  deferred,
} from "./errors.js";
export type { ErrorKind, RpcErrorOptions, Deferred } from "./errors.js";
export type { Transport, TransportSink } from "./transport.js";
export { memoryTransportPair, describeRpcMessage } from "./memory.js";
export type { MemoryTransport, WireLogEntry } from "./memory.js";
export {
  RpcConnection,
  DEFAULT_MAX_INCOMING_CALLS,
  dispatchPending,
  localCapability,
  serverHolders,
  capabilityShared,
  DirectCall,
  nullCapability,
  brokenCapability,
  promiseCapability,
  writeCap,
  readCap,
  isCapabilityPointer,
  peekLocalServer,
  peekSameCap,
} from "./rpc/index.js";
export type {
  FlatRead,
  RpcConnectionOptions,
  RpcStats,
  MessageDescriber,
  Server,
  FlatParamsReader,
  IncomingCall,
  Capability,
  Request,
  PendingCall,
  Response,
  Struct,
  StructCtor,
} from "./rpc/index.js";
// The relay seams of the worker bridge (rpc/forward.ts).
export { forwardingCapability, sendCall } from "./rpc/forward.js";
export type { ForwardedCall, ForwardTarget, SentCall, SentCallResult } from "./rpc/forward.js";
export { writeData, writeDataElement, isAdoptedBuffer, ADOPT_MIN_BYTES } from "./adopt.js";
export { DEFAULT_LIMITS, resolveLimits } from "./limits.js";
export type { ReaderLimits } from "./limits.js";
export {
  encodeFrame,
  encodeFrameToBytes,
  frameHeaderBytes,
  FrameDecoder,
  FrameBudget,
  FrameTracker,
  partialFrameHold,
} from "./framing.js";
export type { MessageTarget, OnMessage } from "./framing.js";
export {
  validateMessage,
  validateRpcMessage,
  readMessage,
  messageFromSegments,
  decodeCost,
  decodeBudget,
  CallLimitError,
  DECODE_AMPLIFICATION,
  DECODE_BASE_UNITS,
  STRUCT_UNITS,
} from "./validate.js";
export { streamTransport } from "./stream.js";
export { ACTIVE_SLAB, IDLE_SLAB_MS, SocketReader, readSocketInPlace, socketReadPath, sweepIdleReaders } from "./socket-read.js";
export { socketWritePath } from "./socket-write.js";
export { TransportLifecycle, LinkState } from "./transport-lifecycle.js";
export type { LifecycleHost } from "./transport-lifecycle.js";
export { WriteFlow, FlowWatch, DEFAULT_WRITE_FLOW, resolveWriteFlow } from "./write-flow.js";
export type { WriteFlowLimits, WriteFlowStats, FlowHost, FlowControlledTransport } from "./write-flow.js";
/** The hand-written rpc.capnp envelope codec (hot messages); see fastpath.ts. */
export * as fastpath from "./fastpath.js";
