/**
 * Bench diagnostic (not part of `pnpm bench`): the CLIENT's CPU per P1 call of two builds of this
 * repository, A/B in the SAME two processes under the same load (issue 13, ninth session): the
 * mirror of diag-server-ab.js.
 *
 *   node bench/dist/diag-client-ab.js --a DIR --b DIR [--n 2000] [--blocks 20] [--pipe 0] [--warm 3] [--same-server]
 *   taskset -c 1 node bench/dist/diag-client-ab.js ...      # pinned: both processes on one CPU
 *
 * DIR is a built checkout. This process is the client: it loads each build's runtime, node package
 * and generated FooInterface (two module graphs side by side, each with its own capnp-ts) and
 * connects one client per build (`connectSocket`) to a forked server child that serves the bench
 * impl on two sockets, each with the same build as its client (`--same-server`: this build's for
 * both, so only the client's own code differs; without it, a protocol change such as a Return's
 * noFinishNeeded shows on the client as it would between two peers of one build). Blocks of `n` sequential `add` calls
 * (or `--pipe K` with K in flight) alternate between the builds (the order flips every block);
 * each block's client `process.cpuUsage()` over its calls is one sample. Prints each build's
 * median and range and the median of the per-block paired difference B − A. Nothing is asserted.
 *
 * Threading: the main (loop) thread of each process.
 */

import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { listenConnections } from "@multiprocess-ts/node";
import { FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { BenchFoo } from "./foo-impl.js";
import { abReport, addBlock } from "./diag-loops.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

/**
 * The server child: one listener per socket path, each served by build `dirs[i]` (`--same-server`:
 * this build for both); exits when its parent says so.
 */
async function serve(args: string[]): Promise<void> {
  const half = args.length / 2;
  const paths = args.slice(0, half);
  const dirs = args.slice(half);
  const ls = await Promise.all(
    paths.map(async (p, i) => {
      const d = dirs[i]!;
      if (d === "-") return listenConnections(p, new EventLoop("diag-client-ab-server", { log: { level: "warning" } }), new BenchFoo(), FooInterfaceServer);
      const url = (f: string): string => pathToFileURL(join(resolve(d), f)).href;
      const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
      const nd = (await import(url("packages/node/dist/index.js"))) as typeof import("@multiprocess-ts/node");
      const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
      const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
      const loop = new rt.EventLoop(`diag-client-ab-server ${d}`, { log: { level: "warning" } });
      return nd.listenConnections(p, loop, new impl.BenchFoo(), foo.FooInterfaceServer);
    }),
  );
  process.on("message", () => {
    void Promise.all(ls.map((l) => l.close({ destroy: true }))).then(() => process.exit(0));
  });
  process.send!("ready");
}

interface Foo {
  add(a: number, b: number): Promise<number>;
}

/** One build's client of the socket at `path`. */
async function connectBuild(dir: string, path: string): Promise<Foo> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const nd = (await import(url("packages/node/dist/index.js"))) as typeof import("@multiprocess-ts/node");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const loop = new rt.EventLoop(`diag-client-ab ${dir}`, { log: { level: "warning" } });
  return nd.connectSocket(loop, path, foo.FooInterfaceClient);
}

const block = (foo: Foo, n: number, pipe: number): Promise<number> => addBlock(foo, n, pipe, "diag-client-ab");

async function client(): Promise<void> {
  const dirs = [opt("a", "."), opt("b", ".")];
  const n = Number(opt("n", "2000"));
  const blocks = Number(opt("blocks", "20"));
  const pipe = Number(opt("pipe", "0"));
  const warm = Number(opt("warm", "3"));
  const tmp = mkdtempSync(join(tmpdir(), "mpts-client-ab-"));
  const paths = dirs.map((_, i) => join(tmp, `s${i}.sock`));
  const serverDirs = process.argv.includes("--same-server") ? dirs.map(() => "-") : dirs;
  const child = fork(fileURLToPath(import.meta.url), ["serve", ...paths, ...serverDirs], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((ok) => child.once("message", ok));
  const foos: Foo[] = [];
  for (let i = 0; i < dirs.length; i++) foos.push(await connectBuild(dirs[i]!, paths[i]!));
  for (let w = 0; w < warm; w++) for (const f of foos) await block(f, Math.max(n, 3000), pipe);
  const got: number[][] = [[], []];
  for (let b = 0; b < blocks; b++) {
    for (const i of b % 2 === 0 ? [0, 1] : [1, 0]) got[i]!.push(await block(foos[i]!, n, pipe));
  }
  child.send("exit");
  await new Promise((ok) => child.once("exit", ok));
  rmSync(tmp, { recursive: true, force: true });
  const what = pipe > 1 ? `add, ${pipe} in flight` : "sequential add";
  process.stdout.write(abReport(`client CPU per call, µs (${blocks} blocks of ${n} ${what}, alternating)`, dirs, got));
  process.exit(0);
}

if (process.argv[2] === "serve") await serve(process.argv.slice(3));
else await client();
