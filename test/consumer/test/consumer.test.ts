/**
 * The consumer test in the README's test command (build time; runs scripts/consumer-test.mjs in a
 * child process): every publishable package goes through a local npm registry into an app outside
 * the workspace, which generates its own schema with the installed mpgen, type-checks under the
 * strict flag set and makes a child-process, a worker-thread and a WebSocket call, runs the
 * installed mptest bin and its own tests written with the installed testing helpers; a global
 * install of mptest runs as a user that cannot write it (root: nobody) and leaves it unchanged. Also checks
 * what each tarball holds, and that a registry that cannot start fails the script loudly.
 * Needs network access to the npm registry (verdaccio's install, typescript, capnp-ts, ws).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SCRIPT = path.join(ROOT, "scripts/consumer-test.mjs");

interface FileEntry { path: string; mode: string; size: number }
interface Tarball { name: string; version: string; tarballBytes: number; unpackedBytes: number; files: FileEntry[] }

function runScript(env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on("data", (b: Buffer) => { stderr += b.toString(); });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** After a run: its temp folder is gone and its registry process is dead. */
function expectNoLeftovers(stdout: string): void {
  const tmp = /temp folder: (\S+)/.exec(stdout)?.[1];
  expect(tmp, "the script names its temp folder").toBeDefined();
  expect(fs.existsSync(tmp!), `${tmp} was removed`).toBe(false);
  const pid = /registry pid: (\d+)/.exec(stdout)?.[1];
  if (pid !== undefined) expect(() => process.kill(Number(pid), 0), `registry process ${pid} is gone`).toThrow(/ESRCH/);
}

/** Names of the non-private packages of the workspace (pnpm-workspace.yaml), sorted. */
function publishablePackages(): string[] {
  const patterns = [...fs.readFileSync(path.join(ROOT, "pnpm-workspace.yaml"), "utf8").matchAll(/^\s*-\s*["']?([^"'\s]+)["']?\s*$/gm)].map((m) => m[1]!);
  return patterns
    .flatMap((p) => (p.endsWith("/*") ? fs.readdirSync(path.join(ROOT, p.slice(0, -2))).map((d) => path.join(ROOT, p.slice(0, -2), d)) : [path.join(ROOT, p)]))
    .map((d) => path.join(d, "package.json"))
    .filter((p) => fs.existsSync(p))
    .map((p) => JSON.parse(fs.readFileSync(p, "utf8")) as { name: string; private?: boolean })
    .filter((p) => p.private !== true)
    .map((p) => p.name)
    .sort((a, b) => a.localeCompare(b));
}

/** A tarball file that is a source, a test, build info or a source map (never shipped). */
function notShipped(f: string): boolean {
  return /(^|\/)src\/|\.test\.(js|d\.ts)$|\.tsbuildinfo$|\.map$/.test(f) || (/(^|\/)test\//.test(f) && !/\.capnp(\.js|\.d\.ts)?$/.test(f));
}

describe("consumer test (scripts/consumer-test.mjs)", () => {
  it("publishes every package to a local registry; an app outside the workspace installs, generates, type-checks and runs", async () => {
    const r = await runScript();
    process.stdout.write(r.stdout.split("\n").filter((l) => !l.startsWith("CONSUMER_RESULT ")).join("\n") + "\n");
    expect(r.code, `${r.stderr}\n${r.stdout.slice(-4000)}`).toBe(0);
    expect(r.stdout).toContain("CONSUMER TEST PASSED");
    for (const line of ["app> spawn: add(2, 3) = 5", "app> spawn: counter 41, 42 (await using)", "app> websocket: add(40, 2) = 42", "app> consumer: OK"]) {
      expect(r.stdout).toContain(line);
    }
    const entries = Number(/tsc: no errors \(strict, noImplicitOverride, exactOptionalPropertyTypes, noUncheckedIndexedAccess, noUnusedLocals, noUnusedParameters, skipLibCheck false\); the app, its generated code and (\d+) public entry points/.exec(r.stdout)?.[1]);
    expect(entries).toBeGreaterThanOrEqual(12); // capnp ., runtime . ./gen ./gen/capnp ./mp/proxy.capnp, node ., gen . ./compile, schema ., proto ., testing ., mptest .
    expect(r.stdout).toMatch(/app> worker: add\(20, 22\) = 42; addAndTell\(1, 1\) = 2; 1 \+ 1 = 2, said the child; heard on worker thread [1-9]/);
    const json = /^CONSUMER_RESULT (.*)$/m.exec(r.stdout)?.[1];
    expect(json).toBeDefined();
    const result = JSON.parse(json!) as { tarballs: Tarball[] };
    const names = result.tarballs.map((t) => t.name);
    expect(names).toEqual(publishablePackages());
    expect(names).toEqual(expect.arrayContaining(["@multiprocess-ts/capnp", "@multiprocess-ts/runtime", "@multiprocess-ts/node", "@multiprocess-ts/gen",
      "@multiprocess-ts/proto", "@multiprocess-ts/testing", "@multiprocess-ts/mptest"]));
    for (const t of result.tarballs) {
      const files = t.files.map((f) => f.path);
      expect(files.filter(notShipped), `${t.name}: no sources, tests, tsbuildinfo or map files`).toEqual([]);
      const shipped = /^(package\.json|README\.md|LICENSE|COPYING\.libmultiprocess|dist\/.+\.(js|d\.ts)|dist\/bundles\/[^/]+\.(mjs|cjs|cjs\.cache)|bin\/[^/]+|schema\/.+|capnp\/.+\.capnp|(test|example)\/[^/]+\.capnp)$/;
      expect(files.filter((f) => !shipped.test(f)), `${t.name}: only dist, bin, schema, *.capnp, README, LICENSE`).toEqual([]);
      expect(files).toEqual(expect.arrayContaining(["package.json", "README.md", "LICENSE", "dist/index.js", "dist/index.d.ts"]));
      expect(t.version).toBe("0.2.0");
    }
    const gen = result.tarballs.find((t) => t.name === "@multiprocess-ts/gen")!;
    const mode = (p: string): string | undefined => gen.files.find((f) => f.path === p)?.mode;
    expect(mode("bin/capnpc-mpgen")).toMatch(/^-rwxr-xr-x/);
    expect(mode("dist/cli.js")).toMatch(/^-rwxr-xr-x/);
    expect(mode("schema/mp/proxy.capnp")).toBeDefined();
    const runtime = result.tarballs.find((t) => t.name === "@multiprocess-ts/runtime")!;
    expect(runtime.files.map((f) => f.path)).toEqual(expect.arrayContaining(["dist/mp/proxy.capnp.js", "dist/mp/proxy.capnp.d.ts", "dist/gen/capnp.js"]));
    const filesOf = (name: string): string[] => result.tarballs.find((t) => t.name === name)!.files.map((f) => f.path);
    expect(filesOf("@multiprocess-ts/proto")).toEqual(expect.arrayContaining(["test/foo.capnp", "example/init.capnp", "COPYING.libmultiprocess", "dist/test/foo.capnp.js"]));
    // mptest ships the bundles it starts fresh workers and children from, and not their builder.
    const mptest = filesOf("@multiprocess-ts/mptest");
    expect(mptest).toEqual(
      expect.arrayContaining(["dist/bundles/foo-server.cjs", "dist/bundles/foo-server.cjs.cache", "dist/bundles/launch.cjs", "dist/bundles/foo-worker.cjs", "dist/cli.js"]),
    );
    expect(mptest.filter((f) => f.startsWith("dist/bundle-build"))).toEqual([]);
    expect(result.tarballs.find((t) => t.name === "@multiprocess-ts/mptest")!.files.find((f) => f.path === "dist/cli.js")!.mode).toMatch(/^-rwxr-xr-x/);
    expect(r.stdout).toMatch(/installed mptest: (\d+) scenarios listed; mptest: OK: \1 runs, 0 failed, 0 leaked, 0 hung/);
    // A global install run by a user that cannot write it (root drops to nobody over the root-owned tree).
    const who = process.getuid?.() === 0 ? "nobody \\((?:runuser|setpriv)\\) over the root-owned tree" : "this user over a tree made read-only";
    expect(r.stdout).toMatch(new RegExp(`global mptest: installed with npm install -g --prefix; run as ${who} \\(uid \\d+, install EACCES\\); (\\d+) scenarios; mptest: OK: \\1 runs, 0 failed, 0 leaked, 0 hung`));
    expect(r.stdout).toMatch(/global install unchanged: [1-9]\d* entries \(paths, sizes, mtimes\) identical before and after the run/);
    expect(r.stdout).toContain("generated test/foo.capnp from the installed @multiprocess-ts/proto: identical to proto/src/test/foo.capnp.ts");
    for (const line of ["app test> # testing: createTestSetup add(20, 22) = 42 after release", "app test> # testing: createFooSetup add(1, 2) = 3", "app test> # pass 3", "app test> # fail 0"]) {
      expect(r.stdout).toContain(line);
    }
    expectNoLeftovers(r.stdout);
  }, 390_000);

  it("fails loudly, non-zero, when the registry cannot start (its port is taken)", async () => {
    const blocker = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await runScript({ CONSUMER_REGISTRY_PORT: String(port) });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^CONSUMER TEST FAILED: registry failed to start: verdaccio exited/m);
      expect(r.stderr).toMatch(/EADDRINUSE/);
      expect(r.stdout).not.toContain("CONSUMER TEST PASSED");
      expectNoLeftovers(r.stdout);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
    expect(blocker.listening).toBe(false);
  }, 120_000);
});
