// The floor diagnostics run end to end with tiny loops (built dist/, so `pnpm build` first; the
// C ping-pong needs gcc and fails loudly without it): every row prints finite numbers. Speed is
// printed by the diagnostics, never asserted here. Also the syscall counts the P1/P2 rows use.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";
import { Figures } from "../dist/figures.js";
import { syscallCounts } from "../dist/stats.js";

const DIST = join(fileURLToPath(new URL(".", import.meta.url)), "..", "dist");

function run(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(DIST, script), ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The numeric cells of the table row labelled `label` (the label, then numbers). */
function cells(out: string, label: string): number[] {
  const line = out.split("\n").find((l) => l.startsWith(label) && /^\s+-?[\d.]/.test(l.slice(label.length)));
  expect(line, `row "${label}" in:\n${out}`).toBeDefined();
  return line!.slice(label.length).trim().split(/\s+/).map(Number);
}

describe("bench floor diagnostics", () => {
  it("floor.js: the C ping-pong, every Node variant and the bench's own rows print finite figures", async () => {
    const baseline = handleBaseline();
    const out = await run("floor.js", ["--rounds", "1", "--n", "300"]);
    for (const label of ["C blocking read/write", "C epoll_wait + read/write (libuv's pattern)",
      "Node 'data' + socket.write (the bench's raw floor)", "Node onread + socket.write", "Node onread + fs.writeSync(fd) in a microtask",
      "bench raw floor (raw.ts, named socket, promise per call)", "birpc add (JSON lines, same socket kind)",
      "P1: our generated add (client reads via onread)"]) {
      const row = cells(out, label).slice(-4); // p50, p99, CPU client, CPU server
      expect(row).toHaveLength(4);
      for (const v of row) expect(Number.isFinite(v) && v > 0).toBe(true);
    }
    expect(cells(out, "process.nextTick").every((v) => Number.isFinite(v) && v > 0)).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  it("transport-ab.js: our transport (both read paths, this build and --base) and the raw and bare ping-pongs, paired blocks", async () => {
    const baseline = handleBaseline();
    const modes = ["transport", "reader", "base-reader", "raw", "bare", "bare-micro", "bare-gen"];
    const out = await run("transport-ab.js", ["--blocks", "2", "--n", "200", "--modes", modes.join(","), "--base", join(DIST, "..", "..")]);
    const t = cells(out, "transport");
    expect(t.slice(3, 5)).toEqual([0, 0]); // the differences against itself
    for (const m of modes) for (const v of cells(out, m).slice(0, 3)) expect(Number.isFinite(v) && v > 0, `${m} in:\n${out}`).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  it("transport-micro.js and diag-idle-slab.js print finite figures", async () => {
    const baseline = handleBaseline();
    const micro = await run("transport-micro.js", ["--n", "200", "--blocks", "2", "--warm", "200", join(DIST, "..", ".."), "bare"]);
    const bare = micro.split("\n").find((l) => l.startsWith("bare"));
    expect(bare, micro).toMatch(/^bare\s+median\s+\d+/);
    const idle = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--expose-gc", join(DIST, "diag-idle-slab.js"), "--conns", "3", "--idle-ms", "10"], { timeout: 120_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`diag-idle-slab.js failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    expect(idle).toMatch(/after the burst: RSS -?[\d.]+ KiB, ArrayBuffers -?[\d.]+ KiB/);
    expect(idle).toMatch(/once idle: +RSS -?[\d.]+ KiB, ArrayBuffers -?[\d.]+ KiB/);
    await assertNoHandleLeaks(baseline);
  });

  it("syscall counts come from /proc and grow with a write; the rows show them per call", async () => {
    const baseline = handleBaseline();
    const a = syscallCounts();
    expect(a).not.toBeNull(); // Linux: /proc/self/io exists
    process.stdout.write("");
    await new Promise<void>((r) => process.stderr.write(" \b", () => r()));
    const b = syscallCounts()!;
    expect(b.writes).toBeGreaterThan(a!.writes);
    expect(b.reads).toBeGreaterThan(a!.reads); // reading /proc/self/io is a read
    const f = new Figures();
    f.io("P1", { io: { clientReads: 1, clientWrites: 1.001, serverReads: 1, serverWrites: 1 } });
    f.io("P2", {});
    expect(f.rows.map((r) => [r.name, r.ours, r.informational])).toEqual([
      ["P1 write syscalls per call, client", 1.001, true], ["P1 write syscalls per call, server", 1, true],
      ["P1 read syscalls per call, client", 1, true], ["P1 read syscalls per call, server", 1, true],
    ]);
    await assertNoHandleLeaks(baseline);
  });
});
