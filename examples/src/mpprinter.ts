/**
 * mpprinter: the printer child of the example (upstream example/printer.cpp). Serves the
 * InitInterface on the socketpair fd named by argv[2]; its Printer writes to this process's stdout.
 * Exits with status 0 when the parent disconnects.
 *
 * Run by mpexample; by hand: `node examples/dist/mpprinter.js <fd>` with a connected socket on fd.
 */
import { serveSpawned } from "@multiprocess-ts/node";
import { InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

class PrinterImpl implements PrinterInterface {
  print(text: string): void {
    process.stdout.write(text);
  }
}

class InitImpl implements InitInterface {
  makePrinter(): PrinterInterface {
    return new PrinterImpl();
  }
  makeCalculator(): CalculatorInterface {
    throw new Error("mpprinter does not make calculators");
  }
}

await serveSpawned(process.argv[2], new InitImpl(), InitInterfaceServer);
