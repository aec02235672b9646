/**
 * docs/usage.md, "Implementing a server": a server is any object that implements the TS
 * interface mpgen generated for a capnp interface (methods may be sync or async). The generated
 * `…Server` class (e.g. `InitInterfaceServer`) wraps it when it is served or passed in a call.
 */
import type { InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import { PrinterInterfaceClient, type PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

export class Printer implements PrinterInterface {
  print(text: string): void {
    process.stdout.write(text);
  }
}

export class Calculator implements CalculatorInterface {
  // `print` is a PrinterInterfaceClient when the caller passed a capability, or null.
  constructor(private readonly print: PrinterInterface | null) {}

  async solveEquation(eqn: string): Promise<void> {
    await this.print?.print(`solving ${eqn}\n`);
  }

  // Called exactly once by the generated server: when the client calls `destroy` (its close()
  // does, CalculatorInterface declares destroy), or when the last reference is released or the
  // connection ends. It uses [Symbol.asyncDispose], else [Symbol.dispose], else close().
  async [Symbol.asyncDispose](): Promise<void> {
    // A client received as a parameter is owned by the callee: close it when done.
    if (this.print instanceof PrinterInterfaceClient) await this.print.close();
  }
}

export class Init implements InitInterface {
  makePrinter(): PrinterInterface {
    return new Printer();
  }
  makeCalculator(print: PrinterInterface | null): CalculatorInterface {
    return new Calculator(print);
  }
}
