/**
 * Loops shared by the diagnostics (client-only.ts, one-process.ts, diag-client-ab.ts,
 * diag-engine-ab.ts and the micro tools): CPU time of this process, their option parsing, lanes
 * of pipelined `add` calls and a block of sequential or pipelined ones, and the A/B report of two
 * builds. Runs on the main thread of a bench process.
 */

/** What the loops call: a FooInterfaceClient of any build (the A/B tools load two side by side). */
export interface Adder {
  add(a: number, b: number): Promise<number>;
}

/** CPU time of this process (all threads), µs. */
export const cpuNow = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** `n` calls of `add` from `lanes` lanes at once; returns CPU µs per call. `who` names the harness in errors. */
export async function pipelinedAdd(foo: Adder, n: number, who: string, lanes = 64): Promise<number> {
  const c0 = cpuNow();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      if ((await foo.add(i, 1)) !== i + 1) throw new Error(`${who}: wrong sum`);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return (cpuNow() - c0) / n;
}

/** A block of `n` `add` calls: sequential when `pipe` <= 1, else `pipe` in flight; returns CPU µs per call. */
export async function addBlock(foo: Adder, n: number, pipe: number, who: string): Promise<number> {
  if (pipe > 1) return pipelinedAdd(foo, n, who, pipe);
  const c0 = cpuNow();
  for (let i = 0; i < n; i++) if ((await foo.add(i, 1)) !== i + 1) throw new Error(`${who}: wrong sum`);
  return (cpuNow() - c0) / n;
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;

/**
 * The report of a two-build A/B over alternating blocks: `title`, then per build (`dirs[i]`) the
 * median and range of its per-block figures `got[i]`, then the median of the per-block paired
 * differences B − A and in how many blocks B was lower.
 */
export function abReport(title: string, dirs: string[], got: number[][]): string {
  const out = [title];
  [0, 1].forEach((i) => {
    const xs = got[i]!;
    out.push(`${"AB"[i]} ${dirs[i]!.padEnd(24)} median ${median(xs).toFixed(2).padStart(7)}  range ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`);
  });
  const diff = got[1]!.map((x, i) => x - got[0]![i]!);
  const below = diff.filter((d) => d < 0).length;
  out.push(`B − A per block: median ${median(diff).toFixed(2)} µs, range ${Math.min(...diff).toFixed(2)}–${Math.max(...diff).toFixed(2)}; B lower in ${below} of ${diff.length} blocks`);
  return out.join("\n") + "\n";
}

/**
 * The value of option `name` in `args` (the tools' argv), removed from `args` with its value so
 * that what remains are the positional arguments; `dflt` when it is absent.
 */
export function takeOption(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1]!;
  args.splice(i, 2);
  return v;
}
