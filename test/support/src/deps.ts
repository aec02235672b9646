/**
 * Run-time lookup of `@multiprocess-ts/node` exports, for scenarios written before the code they
 * need has landed: a scenario names what it `requires` ("node.someExport"), and while anything is
 * missing the runner lists it as pending instead of running it (importing a name that does not
 * exist yet would break `tsc -b` for everyone). The mptest scenarios used this while the node
 * package was being written; they import it statically now, and the mechanism stays for the next
 * scenario that gets ahead of its dependencies.
 *
 * Threading: loop thread only (plain module loading).
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const MODULES = {
  node: "@multiprocess-ts/node",
} as const;

export type DepGroup = keyof typeof MODULES;
/** `group.export`, e.g. "node.listenConnections". */
export type DepName = `${DepGroup}.${string}`;

const loaded = new Map<DepGroup, Promise<Record<string, any> | Error>>();

function loadGroup(g: DepGroup): Promise<Record<string, any> | Error> {
  let p = loaded.get(g);
  if (p === undefined) {
    p = import(MODULES[g]).then(
      (m: Record<string, any>) => m,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
    loaded.set(g, p);
  }
  return p;
}

/** The dependencies in `names` that are not available yet (module or export missing). */
export async function missingDeps(names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    const [g, exp] = n.split(".", 2) as [string, string];
    if (!(g in MODULES)) {
      out.push(`${n} (unknown dependency group)`);
      continue;
    }
    const m = await loadGroup(g as DepGroup);
    if (m instanceof Error) out.push(`${n} (${MODULES[g as DepGroup]} does not load yet)`);
    else if (m[exp] === undefined) out.push(n);
  }
  return out;
}

export class MissingDependencyError extends Error {
  constructor(readonly missing: readonly string[]) {
    super(`not available yet: ${missing.join(", ")}`);
  }
  override get name(): string {
    return "MissingDependencyError";
  }
}

/** Throws {@link MissingDependencyError} unless every name is available. */
export async function requireDeps(names: readonly string[]): Promise<void> {
  const missing = await missingDeps(names);
  if (missing.length > 0) throw new MissingDependencyError(missing);
}

/** `@multiprocess-ts/node`, loaded; throws MissingDependencyError unless it exports `names`. */
export async function nodeModule(names: readonly string[] = []): Promise<Record<string, any>> {
  await requireDeps(names.map((n) => `node.${n}`));
  const m = await loadGroup("node");
  if (m instanceof Error) throw new MissingDependencyError([`node (${m.message})`]);
  return m;
}
