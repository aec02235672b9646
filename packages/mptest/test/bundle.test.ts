// Child bundles with a V8 code cache (bundle.ts cachedChildArgv, code-cache.ts, children/launch.ts):
// the cache a build writes is accepted by a fresh Node process, the launcher passes the arguments
// to the entry's main and reports failures with exit status 1, and a cache of other bytes, one V8
// does not accept, or none only means compiling from source.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheData, cacheFileOf, cachedChildArgv, loadBundle, loadCachedBundle } from "@multiprocess-ts/mptest";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

const FOO_SERVER = new URL("../dist/children/foo-server.js", import.meta.url);
const CODE_CACHE_JS = fileURLToPath(new URL("../dist/code-cache.js", import.meta.url));
const MAIN = new URL("./fixtures/launch-main.mjs", import.meta.url);
const NO_MAIN = new URL("./fixtures/launch-no-main.mjs", import.meta.url);

const node = (args: string[]) => spawnSync(process.execPath, args, { encoding: "utf8", timeout: 60_000 });

let handles: HandleBaseline;
beforeEach(() => {
  handles = handleBaseline();
});
afterEach(() => assertNoHandleLeaks(handles));

describe("cached child bundles", () => {
  it("a fresh process accepts the code cache of the SIGKILL child's bundle, which exports main", () => {
    const [launcher, bundle] = cachedChildArgv(FOO_SERVER);
    expect(existsSync(launcher)).toBe(true);
    expect(existsSync(cacheFileOf(bundle))).toBe(true);
    // The same Node and flags as the scenario's child (none): what the child will see.
    const probe = `import { loadCachedBundle } from ${JSON.stringify(CODE_CACHE_JS)};
const r = loadCachedBundle(${JSON.stringify(bundle)});
process.stdout.write(JSON.stringify({ rejected: r.rejected, main: typeof r.exports.main }));`;
    const r = node(["--input-type=module", "-e", probe]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ rejected: false, main: "function" });
  });

  it("the launcher calls main with the arguments after the bundle", () => {
    const r = node([...cachedChildArgv(MAIN), "3", "x y"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('["3","x y"]\n');
  });

  it("a main that rejects: the error on stderr, exit status 1", () => {
    const r = node([...cachedChildArgv(MAIN), "fail"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("launch-main fixture failure");
  });

  it("a bundle without main: a clear error, exit status 1", () => {
    const r = node(cachedChildArgv(NO_MAIN));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/does not export a main\(args\) function/);
  });

  it("a cache of other bytes, one V8 refuses, or none: the bundle compiles from source", () => {
    const [, bundle] = cachedChildArgv(MAIN);
    const source = readFileSync(bundle, "latin1");
    const id = /^\/\/ mptest-bundle ([0-9a-z]{16})\n/.exec(source)?.[1];
    expect(id).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), "mptest-bundle-"));
    // Each load gets its own source text: V8 would otherwise take the script from this process's
    // compilation cache and never look at the cache data.
    const variant = (name: string): string => {
      const file = join(dir, `${name}.cjs`);
      writeFileSync(file, `${source}// ${name}\n`, "latin1");
      return file;
    };
    const loads = (file: string, rejected: boolean): void => {
      const r = loadCachedBundle(file);
      expect(r.rejected, file).toBe(rejected);
      expect(typeof r.exports.main).toBe("function");
    };
    try {
      loads(variant("missing"), false);
      // Another build's cache (or garbage): its first line is not this bundle's id, V8 never sees it.
      const foreign = variant("foreign");
      writeFileSync(cacheFileOf(foreign), cacheData("0123456789abcdef", loadBundle(variant("other")).createCachedData()));
      loads(foreign, true);
      // This bundle's id, but data V8 refuses.
      const corrupt = variant("corrupt");
      writeFileSync(cacheFileOf(corrupt), cacheData(id!, Buffer.alloc(4096, 0xab)));
      loads(corrupt, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
