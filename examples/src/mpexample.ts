/**
 * mpexample: the parent of the example (upstream example/example.cpp). Spawns mpprinter and
 * mpcalculator as child processes connected over socketpairs, gets a Printer from the printer
 * child, hands it to the calculator child's makeCalculator, and asks the calculator to solve
 * equations: the calculator calls print() on the printer child (through this process), so the
 * answers appear on the printer child's stdout.
 *
 * Usage: node examples/dist/mpexample.js [equation ...]    (default: "1+2")
 */
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import type { ChildProcess } from "node:child_process";
import { spawnProcess, type SpawnedProcess, type SpawnProcessOptions } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

export interface ExampleOptions {
  /** stdio of the printer child (default: inherit, so answers appear on our stdout). */
  printerStdio?: SpawnProcessOptions["stdio"];
  /** Called with the printer child once it runs (e.g. to read its piped stdout). */
  onPrinter?: (child: ChildProcess) => void;
}

export async function main(equations: readonly string[], opts: ExampleOptions = {}): Promise<void> {
  const loop = new EventLoop("mpexample", { log: { level: "warning", logFn: (level, msg) => console.error(`[${level}] ${msg}`) } });
  const children: SpawnedProcess<InitInterfaceClient>[] = [];
  try {
    const printerProc = await spawnProcess(process.execPath, (fd) => [here("./mpprinter.js"), String(fd)], {
      loop,
      InitClient: InitInterfaceClient,
      ...(opts.printerStdio !== undefined ? { stdio: opts.printerStdio } : {}),
    });
    children.push(printerProc);
    opts.onPrinter?.(printerProc.child);
    const calcProc = await spawnProcess(process.execPath, (fd) => [here("./mpcalculator.js"), String(fd)], { loop, InitClient: InitInterfaceClient });
    children.push(calcProc);

    const printer = await printerProc.init.makePrinter();
    // As upstream's example: hand the printer child's Printer straight to the calculator child.
    // It is a client of another Connection, so the runtime relays it (a PrinterInterfaceServer in
    // this process whose calls go to the printer child), and each hop carries its own Context.
    const calculator = await calcProc.init.makeCalculator(printer);
    try {
      for (const eqn of equations) await calculator.solveEquation(eqn);
    } finally {
      await calculator.close(); // remote destroy: the calculator destroys its printer, through us
      await printer.close(); // ours: already destroyed on the printer child, only released here
    }
  } catch (e) {
    for (const c of children) c.child.kill("SIGKILL");
    throw e;
  } finally {
    // Disconnecting makes each child's loop end; they exit with status 0.
    for (const c of children) await c.init.close();
  }
  const statuses = await Promise.all(children.map((c) => c.exited));
  await loop.done;
  const bad = statuses.filter((s) => s.code !== 0);
  if (bad.length > 0) throw new Error(`children exited abnormally: ${JSON.stringify(statuses)}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  await main(args.length > 0 ? args : ["1+2"]);
}
