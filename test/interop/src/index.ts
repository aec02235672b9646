// @multiprocess-ts/test-interop: conformance of our Cap'n Proto RPC engine against the C++
// reference (Debian libcapnp-rpc). Helpers shared by the tests and bench/src/rpc-rtt.ts.
export { buildPeer, INTEROP_ROOT, SCHEMA_PATH, PEER_SOURCE, BUILD_DIR } from "./build.js";
export { startCppServer, runCppClient, runMalformed, runCppBench, spawnFdServer, spawnFdClient, socketDir } from "./peer.js";
export type { CppServer, CheckResult, MalformedKind, MalformedResult, BenchResult } from "./peer.js";
export * as schema from "./schema.js";
export { Tracker, CalcServer, CounterServer, CallbackServer, WatcherServer, call, notify, add, stats, counterInc, counterGet } from "./servers.js";
export { CountingTransport, startTsServer, serveConnection, connectUnix, traceLog } from "./harness.js";
export type { TsServer, ServedConnection, WireEntry } from "./harness.js";
export { streamTransport } from "./stream.js";
