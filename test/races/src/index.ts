// Private test package: fixtures for the worker-thread race tests (test/races/test).
export { createWorkerSetup, FOO_WORKER } from "./setup.js";
export type { WorkerSetup, StartedWorker, LogLine } from "./setup.js";
export { Args, FooClient, FooServer, FooImpl, FooCallbackClient, FooCallbackServer } from "./proxies.js";
export type { Foo, FooCallback } from "./proxies.js";
