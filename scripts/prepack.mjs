#!/usr/bin/env node
// prepack hook of the publishable packages (build time; runs in the package folder before
// `pnpm pack` / `pnpm publish`): refuses to pack a package whose dist/ is missing or holds a file
// with no source in src/ (stale output of a deleted file), and sets the run bit on every bin target
// so the tarball carries mode 755 (a capnp plugin is exec()'d directly; see docs/packaging.md).
// dist/bundles/*.{mjs,cjs,cjs.cache} are mptest's pack-time bundles (its prepack builds them just
// before this; a `*.<pid>.tmp` there is a running mptest's build in progress, left out by its `files`).
import * as fs from "node:fs";
import * as path from "node:path";

const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
const fail = (msg) => { console.error(`prepack ${pkg.name}: ${msg}`); process.exit(1); };

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

if (!fs.existsSync("dist")) fail("no dist/: run `pnpm build` first");
for (const f of walk("dist")) {
  if (/^bundles\/[^/]+\.(mjs|cjs|cjs\.cache)(\.\d+\.tmp)?$/.test(path.relative("dist", f))) continue;
  const rel = path.relative("dist", f).replace(/(\.d\.ts|\.js)(\.map)?$/, "");
  if (rel === path.relative("dist", f)) fail(`unexpected file ${f} in dist/`);
  if (!fs.existsSync(path.join("src", `${rel}.ts`))) fail(`${f} has no source src/${rel}.ts (stale output of a deleted source: rm -rf dist && pnpm build)`);
}
for (const f of ["README.md", "LICENSE"]) if (!fs.existsSync(f)) fail(`missing ${f}`);
const bins = typeof pkg.bin === "string" ? [pkg.bin] : Object.values(pkg.bin ?? {});
for (const b of bins) {
  if (!fs.existsSync(b)) fail(`bin ${b} does not exist`);
  fs.chmodSync(b, 0o755);
}
