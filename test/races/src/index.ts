/**
 * Private test package: the fixture for the worker-thread race tests (test/races/test).
 *
 * Threading: loop thread (the test's thread).
 */
export { createWorkerSetup, FOO_WORKER, RaceFoo } from "./setup.js";
export type { WorkerSetup, StartedWorker } from "./setup.js";
