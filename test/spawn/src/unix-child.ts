/**
 * Child program for test/spawn/test/unix-socket.test.ts: listens on the Unix socket path argv[2]
 * and serves the example InitInterface (construct + makeCalculator + destroy). Its calculator
 * answers by calling back into the Printer capability the parent passed in, so one session
 * exercises calls, callbacks and capabilities with the libmultiprocess conventions.
 *
 * It reports on stdout, one JSON object per line: {"event":"listening"}, each server-side
 * makeThread / asyncRequestStart hook, {"event":"calculator-destroyed"} when the parent's
 * `destroy` reaches the implementation, and, once the single client disconnected and the listener
 * closed, {"event":"done","stats":...} before exiting 0 by running out of work.
 */
import { EventLoop } from "@multiprocess-ts/runtime";
import { listenConnections } from "@multiprocess-ts/node";
import { InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface, PrinterInterfaceClient } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

class Calculator implements CalculatorInterface {
  constructor(private readonly printer: PrinterInterface) {}
  async solveEquation(eqn: string): Promise<void> {
    // Only products of integers: enough to prove the call reached us with its argument.
    const value = eqn.split("*").reduce((acc, t) => acc * Number(t.trim()), 1);
    await this.printer.print(`${eqn} = ${value}`);
  }
  async close(): Promise<void> {
    say({ event: "calculator-destroyed" });
    await (this.printer as PrinterInterfaceClient).close();
  }
}

class Init implements InitInterface {
  makeCalculator(print: PrinterInterface): CalculatorInterface {
    return new Calculator(print);
  }
  makePrinter(): PrinterInterface {
    throw new Error("this child makes no printers");
  }
}

const loop = new EventLoop("unix-child");
loop.hooks.makeThread = () => say({ event: "makeThread" });
loop.hooks.asyncRequestStart = () => say({ event: "asyncRequestStart" });
const listener = await listenConnections(process.argv[2]!, loop, new Init(), InitInterfaceServer, {
  onConnection: (connection) => {
    void connection.disconnected.then(async () => {
      await listener.close();
      say({ event: "done", stats: connection.rpc.stats() });
    });
  },
});
say({ event: "listening" });
