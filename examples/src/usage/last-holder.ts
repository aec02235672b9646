/**
 * docs/usage.md, "Sharing clients": the server disposes an implementation when its LAST holder
 * goes. Here every caller of makeCalculator gets the same cached Calculator; one caller's
 * close() (its remote `destroy`) only ends that caller's hold while others still hold it.
 */
import type { InitInterface, InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";

class SharedCalculator implements CalculatorInterface {
  solveEquation(): void {}
  [Symbol.dispose](): void {
    console.log("disposed once, after the last holder let go");
  }
}

export class CachingInit implements InitInterface {
  readonly #calc = new SharedCalculator(); // one object for every caller
  makeCalculator(): CalculatorInterface {
    return this.#calc;
  }
  makePrinter(): PrinterInterface {
    throw new Error("not in this example");
  }
}

export async function twoHolders(init: InitInterfaceClient): Promise<void> {
  const a = await init.makeCalculator(null);
  const b = await init.makeCalculator(null);
  await a.close(); // destroy while b still holds the object: not disposed
  await b.solveEquation("1+1"); // still works
  await b.close(); // the last holder: disposed now, before close() returns
}
