// @multiprocess-ts/test-hostile: the hostile-peer suite's attack builders, raw peer and server
// harness, shared by test/hostile/test and bench/src/hostile.ts. Loop thread.
export { Words, MSG, bootstrapMessage, finishMessage, callMessage, frame, frameBytes } from "./wire.js";
export type { CallTarget } from "./wire.js";
export { MESSAGE_ATTACKS, FOO_INTERFACE_ID, FOO_METHOD, addCall, passDataCall, refusedCallWithCaps } from "./attacks.js";
export type { MessageAttack } from "./attacks.js";
export { RawPeer, connectOptions } from "./peer.js";
export type { Answer } from "./peer.js";
export { HostileServer, GoodClient, CountingFoo } from "./server.js";
export type { ServerOptions, Transport } from "./server.js";
export { Rng, FuzzBox, KINDS, buildValid, mutateSegments, mutateFrame, randomBytesFrame, fuzzFrames } from "./fuzz.js";
export * from "./ws-peer.js";
