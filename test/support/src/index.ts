// Public API of @multiprocess-ts/test-support: the paired TestSetup fixture and leak helpers.
export { createTestSetup } from "./setup.js";
export type { TestSetup, TestSetupOptions, LogLine } from "./setup.js";
export { FooImplementation } from "./foo-impl.js";
export { releaseProxy } from "./foo-impl.js";
export { assertNoLeaks, assertRpcIdle, expectReject } from "./assert.js";
export { liveSetups, fixtureCounters, dumpFixtures } from "./tracker.js";
export { forceGc, getGc } from "./gc.js";
export { missingDeps, requireDeps, nodeModule, MissingDependencyError } from "./deps.js";
export type { DepName, DepGroup } from "./deps.js";
