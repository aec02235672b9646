/**
 * Child process for the process scenarios: `main([fd])` serves a FooImplementation on the
 * socketpair end whose fd number is the argument (spawnProcess convention). callFn announces
 * itself on stdout ("in-call") and never returns, so the parent can kill this process in the
 * middle of a call. Loading the module does nothing else: the child is started by
 * children/launch.ts from a code-cached bundle (bundle.ts `cachedChildArgv`), which calls `main`.
 *
 * Threading: runs on the child process's main thread (its event loop serves the connection).
 */

import { FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { EventLoop } from "@multiprocess-ts/runtime";
import { serveSpawned } from "@multiprocess-ts/node";
import { FooImplementation } from "@multiprocess-ts/testing";

export async function main(args: string[]): Promise<void> {
  const impl = new FooImplementation();
  impl.fn = () => {
    process.stdout.write("in-call\n");
    return new Promise<void>(() => {});
  };
  await serveSpawned(args[0], impl, FooInterfaceServer, { loop: new EventLoop("mptest-child") });
}
