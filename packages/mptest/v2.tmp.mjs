import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
const BANNER = 'import { createRequire as __c } from "node:module";\nconst require = __c(import.meta.url);';
const stubWs = { name: "stub-ws", setup(b) {
  b.onResolve({ filter: /^ws$/ }, () => ({ path: "ws", namespace: "mptest-stub" }));
  b.onLoad({ filter: /.*/, namespace: "mptest-stub" }, () => ({ contents: "class Unbundled { constructor() { throw new Error('ws is not bundled'); } }\nexport const WebSocket = Unbundled, WebSocketServer = Unbundled;", loader: "js" }));
} };
const oneCapnp = { name: "one-capnp", setup(b) {
  b.onResolve({ filter: /^capnp-ts$/ }, (a) => a.namespace === "mptest-shim" ? undefined : ({ path: "capnp-ts", namespace: "mptest-shim" }));
  b.onLoad({ filter: /.*/, namespace: "mptest-shim" }, () => ({ contents: 'export * from "capnp-ts";', loader: "js", resolveDir: process.cwd() }));
} };
const variants = { base: [], nows: [stubWs], nows_onecapnp: [stubWs, oneCapnp] };
const entry = process.argv[2];
for (const [name, plugins] of Object.entries(variants)) {
  const out = `/tmp/mpprof/v-${name}.mjs`;
  await build({ entryPoints: [entry], bundle: true, platform: "node", format: "esm", target: "node20", banner: { js: BANNER }, outfile: out, logLevel: "error", plugins });
  const cpus = [];
  for (let i = 0; i < 9; i++) {
    const s = execFileSync("node", ["-e", `const c=process.cpuUsage();import(${JSON.stringify(out)}).catch((e)=>{ if (!/parentPort|argv|expected an inherited/.test(String(e))) console.error(e) }).then(()=>{const u=process.cpuUsage(c);console.log((u.user+u.system)/1000)})`], { env: { ...process.env, NODE_EXTRA_CA_CERTS: "" } }).toString();
    cpus.push(Number(s.trim().split("\n").pop()));
  }
  cpus.sort((a, b) => a - b);
  console.log(name.padEnd(14), "size", (statSync(out).size / 1024).toFixed(0) + "K", "import cpu med", cpus[4].toFixed(1), "min", cpus[0].toFixed(1));
}
