/**
 * mpcalculator: the calculator child of the example (upstream example/calculator.cpp). Serves the
 * InitInterface on the socketpair fd named by argv[2]; `makeCalculator(printer)` returns a
 * Calculator that prints its answers through `printer`, a capability that lives in another
 * process (the printer child), reached through the parent.
 */
import { serveSpawned } from "@multiprocess-ts/node";
import { InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface, PrinterInterfaceClient } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import { evaluate } from "./calc.js";

class CalculatorImpl implements CalculatorInterface {
  constructor(private readonly printer: PrinterInterface) {}

  async solveEquation(eqn: string): Promise<void> {
    let answer: string;
    try {
      answer = `The answer is ${evaluate(eqn)}.`;
    } catch (e) {
      answer = `I cannot solve it: ${(e as Error).message}.`;
    }
    await this.printer.print(`Wow ${eqn}, that's a tough one. ${answer}\n`);
  }

  /** Called by the runtime when the parent destroys the calculator: release the printer. */
  async close(): Promise<void> {
    await (this.printer as PrinterInterfaceClient).close();
  }
}

class InitImpl implements InitInterface {
  makeCalculator(print: PrinterInterface): CalculatorInterface {
    // The runtime hands us an owned PrinterInterfaceClient; CalculatorImpl releases it.
    return new CalculatorImpl(print);
  }
  makePrinter(): PrinterInterface {
    throw new Error("mpcalculator does not make printers");
  }
}

await serveSpawned(process.argv[2], new InitImpl(), InitInterfaceServer);
