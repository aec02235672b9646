/**
 * Child process for the process scenarios: serves a FooImplementation on the socketpair end whose
 * fd number is argv[2] (spawnProcess convention). callFn announces itself on stdout ("in-call")
 * and never returns, so the parent can kill this process in the middle of a call.
 *
 * Threading: runs on the child process's main thread (its event loop serves the connection).
 */

import { FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { serveSpawned } from "@multiprocess-ts/node";
import { FooImplementation } from "@multiprocess-ts/testing";

const impl = new FooImplementation();
impl.fn = () => {
  process.stdout.write("in-call\n");
  return new Promise<void>(() => {});
};
await serveSpawned(process.argv[2], impl, FooInterfaceServer);
