/**
 * `@multiprocess-ts/testing`: fixtures for testing multiprocess-ts interfaces (the project's own
 * and users'): createTestSetup (a generated client and server over the fenced memory transport,
 * with a leak check run by `await using`), the engine-level createRpcPair, seeded jitter, the
 * testing hooks, and leak / GC helpers.
 *
 * Threading: loop thread (every fixture lives on the thread that creates it).
 * @module
 */
export { createTestSetup, createTestLoops } from "./setup.js";
export type { TestSetup, TestSetupOptions, TestSetupTarget, LogLine } from "./setup.js";
export { createFooSetup, FooImplementation, releaseProxy } from "./foo.js";
export type { FooSetup } from "./foo.js";
export { createRpcPair, drain, assertStatsIdle } from "./rpc-pair.js";
export type { RpcPair, RpcPairOptions } from "./rpc-pair.js";
export { memoryTransportPair } from "@multiprocess-ts/capnp";
export type { MemoryTransport, WireLogEntry } from "@multiprocess-ts/capnp";
export { wireKinds } from "./wire.js";
export { createJitter } from "./jitter.js";
export type { Jitter } from "./jitter.js";
export { recordHooks, nextHook } from "./hooks.js";
export type { HookName } from "./hooks.js";
export type { TestingHooks } from "@multiprocess-ts/runtime";
export { countDisposals } from "./disposals.js";
export type { DisposalCounter } from "./disposals.js";
export { assertNoLeaks, assertRpcIdle, assertIdle, idleProblems, expectReject } from "./assert.js";
export type { IdleCheck } from "./assert.js";
export { liveSetups, fixtureCounters, dumpFixtures } from "./tracker.js";
export type { TrackedSetup } from "./tracker.js";
export { forceGc, getGc } from "./gc.js";
export { handleBaseline, handleLeaks, assertNoHandleLeaks } from "./handles.js";
export type { HandleBaseline } from "./handles.js";
export { RecordingSink, countWrites, msg, msgValues, startRecording } from "./sink.js";
export { unixSocketPair } from "./sockets.js";
export type { UnixSocketPair } from "./sockets.js";
