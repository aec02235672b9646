#!/usr/bin/env node
// Consumer test (build time; runs after `pnpm build`): proves the packages install and work in an
// app outside this repository, as a user would use them.
//   1. starts a local npm registry (verdaccio 6.8.0, installed once with `npm ci` from
//      test/consumer/verdaccio into .build/) on 127.0.0.1 and a free port, storage in a temp folder;
//   2. packs every non-private workspace package (`pnpm pack`), checks and prints each tarball's
//      files and sizes, and `pnpm publish`es it to that registry;
//   3. in a temp folder outside the workspace: `npm install`s them from the registry, generates
//      test/consumer/app/schema/calc.capnp with the installed mpgen (CLI, and capnp plugin mode
//      through the installed capnpc-mpgen), type-checks with the strict flag set (skipLibCheck
//      false) and runs a spawned-child call, a worker-thread call and a WebSocket call;
//   4. runs the installed `mptest` bin (`--list`, then every scenario once over 2 jobs) and the app's own
//      tests (`node --test`) written with the installed @multiprocess-ts/testing helpers.
//   5. installs mptest globally (`npm install -g --prefix`) and runs its bin on a few scenarios as
//      a user that cannot write the install (root: `nobody` through runuser or setpriv); the install's
//      tree (paths, sizes, mtimes) must be the same after the run.
// Exits non-zero with a clear message on any failure (including a registry that cannot start);
// kills the registry and removes its temp folders on exit. Last line on success:
// `CONSUMER_RESULT <json>` (tarball contents, timings) for test/consumer/test/consumer.test.ts.
// Env: CONSUMER_REGISTRY_PORT forces the registry's port (the test uses it to check the failure).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const VERDACCIO_VERSION = "6.8.0";
const VERDACCIO_DIR = path.join(ROOT, ".build", `verdaccio-${VERDACCIO_VERSION}`);
const APP_TEMPLATE = path.join(ROOT, "test/consumer/app");
const TYPESCRIPT = "typescript@5.9.3";
const TYPES_NODE = "@types/node@20.19.43";
const LIMIT_MS = 360_000;
const STRICT_FLAGS = "strict, noImplicitOverride, exactOptionalPropertyTypes, noUncheckedIndexedAccess, noUnusedLocals, noUnusedParameters, skipLibCheck false";

const t0 = Date.now();
const timings = {};
const log = (msg) => console.log(`[consumer ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
class Failure extends Error {}

let registry; // the verdaccio child process
let tmp; // everything this run writes outside .build/

/** Last resort on exit (synchronous): SIGKILL the registry, remove the temp folder. */
function cleanup() {
  if (registry !== undefined && registry.exitCode === null && registry.signalCode === null) registry.kill("SIGKILL");
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
}

/** Stops the registry and waits until it has exited (so it is reaped, not left a zombie). */
async function stopRegistry() {
  if (registry === undefined || registry.exitCode !== null || registry.signalCode !== null) return;
  const exited = new Promise((resolve) => registry.once("exit", resolve));
  registry.kill("SIGTERM");
  const timer = setTimeout(() => registry.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { console.error(`consumer test: ${sig}`); process.exit(1); });
// Ref'd on purpose: it also keeps the process alive while a request waits with no open handle.
const watchdog = setTimeout(() => {
  console.error(`CONSUMER TEST FAILED: timed out after ${LIMIT_MS / 1000}s`);
  process.exit(1);
}, LIMIT_MS);

/** Like Promise.all, but waits for every promise (no child still running) before it rejects. */
async function settleAll(promises) {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => r.value);
}

/** Runs a command; resolves with its stdout, or throws a Failure with its output. */
function run(cmd, args, { cwd = ROOT, env = {}, timeoutMs = 180_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b) => { out += b; });
    child.stderr.on("data", (b) => { err += b; });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => { clearTimeout(timer); reject(new Failure(`cannot run ${cmd}: ${e.message}`)); });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Failure(`${cmd} ${args.join(" ")} (in ${cwd}) failed with ${signal ?? `exit code ${code}`}:\n${out}${err}`));
    });
  });
}

async function step(name, fn) {
  const start = Date.now();
  log(`${name} ...`);
  const r = await fn();
  timings[name] = Date.now() - start;
  log(`${name}: done in ${(timings[name] / 1000).toFixed(1)}s`);
  return r;
}

async function preflight() {
  await run("capnp", ["--version"]).catch(() => {
    throw new Failure("the Cap'n Proto compiler `capnp` is not on PATH: apt-get install capnproto (mpgen needs it)");
  });
  for (const dir of publishableDirs()) {
    if (!fs.existsSync(path.join(dir, "dist"))) throw new Failure(`${path.relative(ROOT, dir)}/dist is missing: run pnpm build first`);
  }
}

/**
 * Every workspace package (pnpm-workspace.yaml: `dir` and `dir/*` patterns) that is not private,
 * sorted by name (a new one is picked up automatically).
 */
function publishableDirs() {
  const patterns = [...fs.readFileSync(path.join(ROOT, "pnpm-workspace.yaml"), "utf8").matchAll(/^\s*-\s*["']?([^"'\s]+)["']?\s*$/gm)].map((m) => m[1]);
  const dirs = patterns.flatMap((p) => {
    if (!p.endsWith("/*")) return [path.join(ROOT, p)];
    const base = path.join(ROOT, p.slice(0, -2));
    return fs.readdirSync(base).map((d) => path.join(base, d));
  });
  return dirs
    .filter((d) => fs.existsSync(path.join(d, "package.json")))
    .map((d) => ({ d, pkg: JSON.parse(fs.readFileSync(path.join(d, "package.json"), "utf8")) }))
    .filter(({ pkg }) => pkg.private !== true)
    .sort((a, b) => a.pkg.name.localeCompare(b.pkg.name))
    .map(({ d }) => d);
}

async function ensureVerdaccio() {
  const pkg = path.join(VERDACCIO_DIR, "node_modules/verdaccio/package.json");
  if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, "utf8")).version === VERDACCIO_VERSION) return;
  fs.rmSync(VERDACCIO_DIR, { recursive: true, force: true });
  fs.mkdirSync(VERDACCIO_DIR, { recursive: true });
  for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(ROOT, "test/consumer/verdaccio", f), path.join(VERDACCIO_DIR, f));
  await run("npm", ["ci", "--no-audit", "--no-fund", "--omit=dev", "--ignore-scripts", "--loglevel=error"], { cwd: VERDACCIO_DIR }).catch((e) => {
    fs.rmSync(VERDACCIO_DIR, { recursive: true, force: true });
    throw new Failure(`registry failed to start: cannot install verdaccio ${VERDACCIO_VERSION}:\n${e.message}`);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startRegistry() {
  const port = process.env["CONSUMER_REGISTRY_PORT"] !== undefined ? Number(process.env["CONSUMER_REGISTRY_PORT"]) : await freePort();
  const dir = path.join(tmp, "registry");
  fs.mkdirSync(dir);
  const config = path.join(dir, "config.yaml");
  fs.writeFileSync(config, [
    `storage: ${JSON.stringify(path.join(dir, "storage"))}`,
    "auth:",
    "  htpasswd:",
    `    file: ${JSON.stringify(path.join(dir, "htpasswd"))}`,
    "    max_users: -1",
    "uplinks: {}",
    "packages:",
    "  '@multiprocess-ts/*':",
    "    access: $all",
    "    publish: $anonymous",
    "    unpublish: $anonymous",
    "  '**':",
    "    access: $all",
    "log: { type: stdout, format: pretty, level: warn }",
    "",
  ].join("\n"));
  const bin = path.join(VERDACCIO_DIR, "node_modules/verdaccio/bin/verdaccio");
  let output = "";
  registry = spawn(process.execPath, [bin, "--config", config, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  registry.stdout.on("data", (b) => { output += b; });
  registry.stderr.on("data", (b) => { output += b; });
  log(`registry pid: ${registry.pid}`);
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (registry.exitCode !== null || registry.signalCode !== null) {
      throw new Failure(`registry failed to start: verdaccio exited (${registry.signalCode ?? `code ${registry.exitCode}`}) on 127.0.0.1:${port}:\n${output}`);
    }
    // Ours once verdaccio has logged its address (a foreign server on the port answers too).
    if (output.includes(`127.0.0.1:${port}`)) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 2000);
      const ok = await fetch(`${url}-/ping`, { signal: ac.signal }).then((r) => r.ok, () => false);
      clearTimeout(timer);
      if (ok) return url;
    }
    if (Date.now() > deadline) throw new Failure(`registry failed to start: verdaccio did not answer on ${url} within 60 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `tar -tzvf` entries of a tarball: mode, size, path. */
async function tarEntries(tgz) {
  const out = await run("tar", ["-tzvf", tgz]);
  return out.trim().split("\n").map((line) => {
    const f = line.trim().split(/\s+/);
    return { mode: f[0], size: Number(f[2]), path: f.slice(5).join(" ") };
  });
}

/**
 * Whether a tarball may hold `f` (a path inside package/): compiled dist/ (and mptest's pack-time
 * bundles), bins, gen's schema/, schema's capnp/*.capnp, proto's .capnp sources (test/ and example/, the repository's
 * layout) with upstream's notice, README, LICENSE. Never sources, tests, .tsbuildinfo or maps; a
 * test/ folder holds schemas and their generated modules only (proto's dist/test/foo.capnp.js).
 */
function allowedFile(f) {
  if (/(^|\/)src\//.test(f) || /\.test\.(js|d\.ts)$/.test(f)) return false;
  if (/(^|\/)test\//.test(f) && !/\.capnp(\.js|\.d\.ts)?$/.test(f)) return false;
  return /^(package\.json|README\.md|LICENSE|COPYING\.libmultiprocess|dist\/.+\.(js|d\.ts)|dist\/bundles\/[^/]+\.(mjs|cjs|cjs\.cache)|bin\/[^/]+|schema\/.+|capnp\/.+\.capnp|(test|example)\/[^/]+\.capnp)$/.test(f);
}

/** Problems with one tarball's contents (empty when it holds only what it should). */
function checkTarball(pkg, entries, packedPkg) {
  const problems = [];
  for (const e of entries) if (!allowedFile(e.path.replace(/^package\//, ""))) problems.push(`unexpected file ${e.path}`);
  for (const f of ["package/package.json", "package/README.md", "package/LICENSE"]) if (!entries.some((e) => e.path === f)) problems.push(`missing ${f}`);
  const bins = typeof packedPkg.bin === "string" ? [packedPkg.bin] : Object.values(packedPkg.bin ?? {});
  for (const b of bins) {
    const e = entries.find((x) => x.path === `package/${b.replace(/^\.\//, "")}`);
    if (e === undefined) problems.push(`bin ${b} is not in the tarball`);
    else if (!/^-rwx/.test(e.mode)) problems.push(`bin ${b} is not executable in the tarball (${e.mode})`);
  }
  for (const k of ["dependencies", "peerDependencies", "optionalDependencies"]) {
    for (const [n, v] of Object.entries(packedPkg[k] ?? {})) if (/^workspace:/.test(v)) problems.push(`${k}.${n} is still ${v}`);
  }
  if (packedPkg.private === true) problems.push(`${pkg} is private`);
  return problems;
}

/** Packs every publishable package (in parallel), checks and prints each tarball. */
async function packAll() {
  const packed = await settleAll(publishableDirs().map(packOne));
  for (const { info, problems } of packed) {
    console.log(`\n${info.name}@${info.version}: ${info.files.length} files, tarball ${info.tarballBytes} B, unpacked ${info.unpackedBytes} B`);
    for (const f of info.files) console.log(`  ${f.mode} ${String(f.size).padStart(8)}  ${f.path}`);
    console.log(`  dependencies: ${JSON.stringify(info.dependencies)}`);
    if (problems.length > 0) throw new Failure(`${info.name}: the tarball holds what it should not:\n  ${problems.join("\n  ")}`);
  }
  return packed.map((p) => p.info);
}

async function packOne(dir) {
  const name = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).name;
  const dest = path.join(tmp, "tarballs", name.replace(/[@/]/g, "_"));
  fs.mkdirSync(dest, { recursive: true });
  await run("pnpm", ["pack", "--pack-destination", dest], { cwd: dir });
  const tgzName = fs.readdirSync(dest).find((f) => f.endsWith(".tgz"));
  if (tgzName === undefined) throw new Failure(`pnpm pack wrote no tarball for ${name}`);
  const tgz = path.join(dest, tgzName);
  const entries = await tarEntries(tgz);
  await run("tar", ["-xzf", tgz, "-C", dest, "package/package.json"]);
  const packedPkg = JSON.parse(fs.readFileSync(path.join(dest, "package/package.json"), "utf8"));
  const info = {
    name, version: packedPkg.version, tarball: tgz, tarballBytes: fs.statSync(tgz).size,
    unpackedBytes: entries.reduce((s, e) => s + e.size, 0), files: entries.map((e) => ({ path: e.path.replace(/^package\//, ""), mode: e.mode, size: e.size })),
    dependencies: packedPkg.dependencies ?? {},
  };
  info.files.sort((a, b) => a.path.localeCompare(b.path));
  return { info, problems: checkTarball(name, entries, packedPkg) };
}

async function publishAll(url, tarballs) {
  // npm refuses to publish without a credential; the registry allows $anonymous, any token does.
  const npmrc = path.join(tmp, "publish.npmrc");
  fs.writeFileSync(npmrc, `//${new URL(url).host}/:_authToken=anonymous\n`);
  await settleAll(tarballs.map(async (t) => {
    await run("pnpm", ["publish", t.tarball, "--registry", url, "--no-git-checks"], { cwd: tmp, env: { npm_config_userconfig: npmrc } });
    log(`published ${t.name}@${t.version}`);
  }));
}

async function installApp(url, tarballs) {
  const app = path.join(tmp, "app");
  fs.cpSync(APP_TEMPLATE, app, { recursive: true });
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "consumer-app", private: true, type: "module" }, null, 2) + "\n");
  fs.writeFileSync(path.join(app, ".npmrc"), `@multiprocess-ts:registry=${url}\n`);
  // What an app installs (docs/usage.md), then every other published package, so that all their
  // public .d.ts files are type-checked too (src/public-types.ts below).
  const first = ["@multiprocess-ts/node", "@multiprocess-ts/runtime", "@multiprocess-ts/gen"];
  const names = [...first, ...tarballs.map((t) => t.name).filter((n) => !first.includes(n))];
  const wanted = [...names.map((n) => `${n}@${tarballs.find((t) => t.name === n)?.version ?? "latest"}`), TYPESCRIPT, TYPES_NODE];
  writePublicTypes(app, tarballs);
  log(`npm install ${wanted.join(" ")}`);
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...wanted], { cwd: app });
  // Installed from the registry: each package's integrity is that of the tarball published.
  const lock = JSON.parse(fs.readFileSync(path.join(app, "package-lock.json"), "utf8"));
  for (const t of tarballs) {
    const entry = lock.packages[`node_modules/${t.name}`];
    const integrity = `sha512-${createHash("sha512").update(fs.readFileSync(t.tarball)).digest("base64")}`;
    if (entry?.integrity !== integrity) throw new Failure(`${t.name} in the app (${entry?.resolved ?? "not installed"}) is not the tarball published`);
  }
  return app;
}

/**
 * src/public-types.ts: a type-only re-export of every typed entry point in the published exports
 * maps, so that tsc checks each package's public .d.ts files with the app's flags (skipLibCheck
 * false only checks declaration files the program reaches).
 */
function writePublicTypes(app, tarballs) {
  const lines = ["// Written by scripts/consumer-test.mjs: every typed entry point of the published packages.", ""];
  let i = 0;
  for (const t of tarballs) {
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(t.tarball), "package/package.json"), "utf8"));
    for (const [sub, target] of Object.entries(pkg.exports ?? { ".": { types: pkg.types } })) {
      if (sub.includes("*") || typeof target !== "object" || target === null || !("types" in target)) continue;
      lines.push(`export type * as entry${i++} from ${JSON.stringify(t.name + sub.slice(1))};`);
    }
  }
  fs.writeFileSync(path.join(app, "src/public-types.ts"), lines.join("\n") + "\n");
  return i;
}

async function generate(app) {
  const bin = path.join(app, "node_modules/.bin");
  await run(path.join(bin, "mpgen"), ["-I", "schema", "-o", "src/gen", "schema/calc.capnp"], { cwd: app });
  const include = (await run(path.join(bin, "mpgen"), ["--print-include"], { cwd: app })).trim();
  if (!fs.existsSync(path.join(include, "mp/proxy.capnp"))) throw new Failure(`mpgen --print-include gave ${include}, which has no mp/proxy.capnp`);
  fs.mkdirSync(path.join(app, "gen-plugin"));
  await run("capnp", ["compile", `-I${include}`, "--src-prefix=schema", `-o${path.join(bin, "capnpc-mpgen")}:gen-plugin`, "schema/calc.capnp"], { cwd: app });
  const cli = fs.readFileSync(path.join(app, "src/gen/calc.capnp.ts"), "utf8");
  const plugin = fs.readFileSync(path.join(app, "gen-plugin/calc.capnp.ts"), "utf8");
  if (cli !== plugin) throw new Failure("mpgen CLI and capnpc-mpgen plugin outputs differ");
  const imports = [...cli.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
  if (imports.some((i) => !i.startsWith("@multiprocess-ts/runtime/"))) throw new Failure(`generated code imports ${imports.join(", ")}; expected only @multiprocess-ts/runtime`);
  log(`generated src/gen/calc.capnp.ts (${cli.length} B; CLI and plugin outputs identical); imports: ${imports.join(", ")}`);
  // The published schemas ship their .capnp sources in the repository's layout: the installed
  // mpgen, run in the installed package, writes what this repository generated from them.
  const proto = path.join(app, "node_modules/@multiprocess-ts/proto");
  await run(path.join(bin, "mpgen"), ["-I", ".", "-o", path.join(app, "gen-proto"), "test/foo.capnp"], { cwd: proto });
  const foo = fs.readFileSync(path.join(app, "gen-proto/test/foo.capnp.ts"), "utf8");
  if (foo !== fs.readFileSync(path.join(ROOT, "proto/src/test/foo.capnp.ts"), "utf8")) {
    throw new Failure("mpgen on the installed @multiprocess-ts/proto's test/foo.capnp differs from proto/src/test/foo.capnp.ts");
  }
  log(`generated test/foo.capnp from the installed @multiprocess-ts/proto: identical to proto/src/test/foo.capnp.ts (${foo.length} B)`);
}

async function typecheckAndRun(app) {
  await step("type-check", async () => {
    const out = await run(process.execPath, [path.join(app, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { cwd: app });
    if (out.trim() !== "") throw new Failure(`tsc reported:\n${out}`);
    const entries = fs.readFileSync(path.join(app, "src/public-types.ts"), "utf8").match(/^export type/gm)?.length ?? 0;
    log(`tsc: no errors (${STRICT_FLAGS}); the app, its generated code and ${entries} public entry points`);
  });
  const out = await step("run", () => run(process.execPath, ["dist/main.js"], { cwd: app, timeoutMs: 90_000 }));
  process.stdout.write(out.trimEnd().replace(/^/gm, "  app> ") + "\n");
  for (const want of [/^spawn: add\(2, 3\) = 5$/m, /^spawn: child pid \d+; addAndTell\(4, 5\) = 9; callback: 4 \+ 5 = 9, said the child$/m,
    /^spawn: counter 41, 42 \(await using\)$/m, /^worker: add\(20, 22\) = 42; addAndTell\(1, 1\) = 2; 1 \+ 1 = 2, said the child; heard on worker thread [1-9]\d*$/m,
    /^spawn: child exited with code 0$/m, /^websocket: add\(40, 2\) = 42; websocket server pid \d+$/m, /^consumer: OK$/m]) {
    if (!want.test(out)) throw new Failure(`the app's output lacks ${want}`);
  }
}

/** Every file under `dir` with its size (to prove a run wrote nothing there). */
function fileList(dir) {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory())
    .map((e) => { const p = path.join(e.parentPath ?? e.path, e.name); return `${path.relative(dir, p)} ${fs.statSync(p).size}`; }).sort();
}

/**
 * The installed `mptest` bin: lists its scenarios and runs each once, from its pack-time bundles
 * (no esbuild installed, nothing written into the package); then the app's own tests, written
 * with the installed testing helpers (src/testing.test.ts), under `node --test`.
 */
async function runMptestAndAppTests(app) {
  if (fs.existsSync(path.join(app, "node_modules/esbuild"))) throw new Failure("installing @multiprocess-ts/mptest pulled in esbuild (its bundles are built at pack time)");
  const pkgDir = path.join(app, "node_modules/@multiprocess-ts/mptest");
  const before = fileList(pkgDir);
  const scenarios = await step("mptest --list", () => run("npm", ["exec", "--no", "--", "mptest", "--list"], { cwd: app }));
  const count = scenarios.trim().split("\n").length;
  if (count < 20) throw new Failure(`npx mptest --list printed ${count} scenarios:\n${scenarios}`);
  // --jobs 2: the installed cli.js also starts its own child runners.
  const out = await step("mptest --repeat 1 --jobs 2", () => run(path.join(app, "node_modules/.bin/mptest"), ["--repeat", "1", "--jobs", "2"], { cwd: app, timeoutMs: 180_000 }));
  const summary = /^mptest: OK: (\d+) runs, 0 failed, 0 leaked, 0 hung.*$/m.exec(out);
  if (summary === null || Number(summary[1]) !== count) throw new Failure(`the installed mptest did not run its ${count} scenarios cleanly:\n${out}`);
  log(`installed mptest: ${count} scenarios listed; ${summary[0]}`);
  const after = fileList(pkgDir);
  if (after.join("\n") !== before.join("\n")) throw new Failure(`mptest wrote into its installed package: ${after.filter((f) => !before.includes(f)).join(", ")}`);
  const tests = await step("app tests", () => run(process.execPath, ["--test", "--test-reporter=tap", "dist/testing.test.js"], { cwd: app, timeoutMs: 90_000 }));
  process.stdout.write(tests.split("\n").filter((l) => /^# (testing:|pass|fail)/.test(l.trim())).map((l) => `  app test> ${l.trim()}\n`).join(""));
  if (!/^# pass 3$/m.test(tests) || !/^# fail 0$/m.test(tests)) throw new Failure(`the app's tests (node --test dist/testing.test.js) did not all pass:\n${tests}`);
}

/** Every entry under `dir` (not following links) with its type, size and mtime, sorted. */
function treeListing(dir) {
  return fs.readdirSync(dir, { recursive: true }).map((rel) => {
    const s = fs.lstatSync(path.join(dir, rel));
    const type = s.isDirectory() ? "d" : s.isSymbolicLink() ? "l" : "f";
    return `${rel} ${type} ${s.size} ${s.mtimeMs}`;
  }).sort();
}

/** Adds or removes write permission on every file and folder under `dir` (links untouched). */
function setWritable(dir, writable) {
  for (const rel of ["", ...fs.readdirSync(dir, { recursive: true })]) {
    const p = path.join(dir, rel);
    const s = fs.lstatSync(p);
    if (!s.isSymbolicLink()) fs.chmodSync(p, writable ? s.mode | 0o200 : s.mode & ~0o222);
  }
}

/** The command prefix that runs a command as `nobody` (root: runuser, else setpriv), or fails. */
function dropPrivileges() {
  const dirs = [...(process.env["PATH"] ?? "").split(path.delimiter), "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  const find = (name) => dirs.map((d) => path.join(d, name)).find((p) => fs.existsSync(p));
  const runuser = find("runuser");
  if (runuser !== undefined) return { tool: "runuser", prefix: [runuser, "-u", "nobody", "--"] };
  const setpriv = find("setpriv");
  if (setpriv !== undefined) return { tool: "setpriv", prefix: [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] };
  throw new Failure("neither runuser nor setpriv is on PATH (util-linux): cannot run the global mptest as an unprivileged user");
}

/**
 * A global install (`npm install -g --prefix`) of mptest from the registry, whose bin runs a few
 * scenarios (worker threads, spawned children) as a user that cannot write the install: as root,
 * `nobody` over the root-owned tree; otherwise this user over a tree made read-only. Checks that
 * the tree (paths, sizes, mtimes) is the same after the run.
 */
async function runGlobalMptest(url, tarballs) {
  const version = tarballs.find((t) => t.name === "@multiprocess-ts/mptest").version;
  const prefix = path.join(tmp, "global");
  await run("npm", ["install", "-g", "--prefix", prefix, `--@multiprocess-ts:registry=${url}`, "--no-audit", "--no-fund", "--prefer-offline",
    "--loglevel=error", `@multiprocess-ts/mptest@${version}`], { cwd: tmp });
  const installed = JSON.parse(fs.readFileSync(path.join(prefix, "lib/node_modules/@multiprocess-ts/mptest/package.json"), "utf8"));
  if (installed.version !== version) throw new Failure(`the global install holds mptest ${installed.version}, not ${version}`);
  const home = path.join(tmp, "home");
  fs.mkdirSync(path.join(home, "tmp"), { recursive: true });
  const root = process.getuid() === 0;
  let prefixCmd = [];
  let who = "this user over a tree made read-only";
  if (root) {
    const drop = dropPrivileges();
    prefixCmd = drop.prefix;
    who = `nobody (${drop.tool}) over the root-owned tree`;
    fs.chmodSync(tmp, 0o755); // mkdtemp's 0700: nobody must reach the install and its home
    const [uid, gid] = await settleAll([run("id", ["-u", "nobody"]), run("id", ["-g", "nobody"])]);
    for (const d of [home, path.join(home, "tmp")]) fs.chownSync(d, Number(uid.trim()), Number(gid.trim()));
  } else {
    setWritable(prefix, false);
  }
  // A clean environment: the user's own HOME and TMPDIR, node and the global bin on PATH.
  const env = ["env", "-i", `PATH=${path.join(prefix, "bin")}:${path.dirname(process.execPath)}:/usr/bin:/bin`, `HOME=${home}`, `TMPDIR=${path.join(home, "tmp")}`];
  const as = (cmd) => { const argv = [...prefixCmd, ...env, ...cmd]; return run(argv[0], argv.slice(1), { cwd: home, timeoutMs: 120_000 }); };
  try {
    const before = treeListing(prefix);
    const pkgDir = path.join(prefix, "lib/node_modules/@multiprocess-ts/mptest");
    const probe = (await as(["node", "-e", `let w="writable";try{require("fs").accessSync(${JSON.stringify(pkgDir)},2)}catch(e){w=e.code}console.log(process.getuid()+" "+w)`])).trim();
    const [uid, access] = probe.split(" ");
    if (access === "writable" || (root && uid === "0")) throw new Failure(`the global mptest would run as uid ${uid} with its install ${access}`);
    const filter = "Call FooInterface methods|SpawnProcess|Worker exits|SIGKILL";
    const count = (await as(["mptest", "--list", "--filter", filter])).trim().split("\n").length;
    const out = await as(["mptest", "--repeat", "1", "--jobs", "2", "--filter", filter]);
    const summary = /^mptest: OK: (\d+) runs, 0 failed, 0 leaked, 0 hung.*$/m.exec(out);
    if (summary === null || Number(summary[1]) !== count || count < 4) throw new Failure(`the global mptest did not run its ${count} scenarios cleanly:\n${out}`);
    log(`global mptest: installed with npm install -g --prefix; run as ${who} (uid ${uid}, install ${access}); ${count} scenarios; ${summary[0]}`);
    const after = treeListing(prefix);
    if (after.join("\n") !== before.join("\n")) {
      throw new Failure(`the global mptest run changed its install:\n  ${[...after.filter((e) => !before.includes(e)), ...before.filter((e) => !after.includes(e)).map((e) => `gone: ${e}`)].join("\n  ")}`);
    }
    log(`global install unchanged: ${after.length} entries (paths, sizes, mtimes) identical before and after the run`);
  } finally {
    if (!root) setWritable(prefix, true);
  }
}

async function main() {
  await preflight();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mpts-consumer-"));
  if (!path.relative(ROOT, tmp).startsWith("..")) throw new Failure(`temp folder ${tmp} is inside the workspace; set TMPDIR elsewhere`);
  log(`temp folder: ${tmp}`);
  await step("verdaccio install", ensureVerdaccio);
  const url = await step("registry start", startRegistry);
  log(`registry: verdaccio ${VERDACCIO_VERSION} at ${url}`);
  const tarballs = await step("pack", packAll);
  await step("publish", () => publishAll(url, tarballs));
  const app = await step("npm install", () => installApp(url, tarballs));
  await step("generate", () => generate(app));
  await typecheckAndRun(app);
  await runMptestAndAppTests(app);
  await step("global mptest", () => runGlobalMptest(url, tarballs));
  log("CONSUMER TEST PASSED");
  const summary = tarballs.map(({ name, version, tarballBytes, unpackedBytes, files }) => ({ name, version, tarballBytes, unpackedBytes, files }));
  console.log(`CONSUMER_RESULT ${JSON.stringify({ totalMs: Date.now() - t0, timings, tarballs: summary })}`);
}

main().then(
  () => 0,
  (e) => {
    console.error(`CONSUMER TEST FAILED: ${e instanceof Failure ? e.message : e?.stack ?? e}`);
    return 1;
  },
).then(async (code) => {
  await stopRegistry();
  cleanup();
  clearTimeout(watchdog);
  process.exit(code);
});
