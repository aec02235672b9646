/**
 * Shared by the server A/B diagnostics that call a server through sockets (diag-server-ab.ts,
 * diag-service.ts; not part of `pnpm bench`): one FooInterface `add` client per socket, either
 * each build's own (its runtime, node package and generated code, loaded by directory) or this
 * build's. Kept out of ab-builds.ts, whose users load builds only by directory: importing this
 * module loads this checkout's own runtime, node package and generated code.
 *
 * Threading: the main thread of the diagnostic's client process.
 */
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { EventLoop } from "@multiprocess-ts/runtime";
import { connectSocket } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";

/** One socket's FooInterface `add` client, as the server A/B diagnostics call it. */
export interface AddClient {
  add(a: number, b: number): Promise<number>;
  close(): Promise<void>;
}

/** Connects build `dir`'s own FooInterfaceClient (its runtime, node package and generated code). */
async function buildAddClient(dir: string, path: string, name: string): Promise<AddClient> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const nd = (await import(url("packages/node/dist/index.js"))) as typeof import("@multiprocess-ts/node");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const loop = new rt.EventLoop(`${name} ${dir}`, { log: { level: "warning" } });
  const c = await nd.connectSocket(loop, path, foo.FooInterfaceClient);
  return { add: (a, b) => c.add(a, b), close: () => c.close() };
}

/**
 * One `add` client per socket path: with `dirs`, socket i is called by build `dirs[i]`'s own client
 * (both sides A/B; its loop named `name` and the build's directory), else by this build's on `loop`.
 */
export function connectAddClients(dirs: readonly string[] | null, paths: readonly string[], loop: EventLoop, name: string): Promise<AddClient[]> {
  return Promise.all(
    paths.map(async (p, i) => {
      if (dirs !== null) return buildAddClient(dirs[i]!, p, name);
      const c = await connectSocket(loop, p, FooInterfaceClient);
      return { add: (a: number, b: number) => c.add(a, b), close: () => c.close() };
    }),
  );
}
