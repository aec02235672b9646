// The "Testing your own interfaces" example of docs/testing.md (quoted there verbatim between the
// `example:begin` / `example:end` markers; docs.test.ts checks the quote). It tests the example
// Init interface of proto/example with createTestSetup, exactly as a user would test theirs.
// Threading: loop thread (the test's thread).
// example:begin
import { expect, it } from "vitest";
import { createTestSetup } from "@multiprocess-ts/testing";
import { InitInterfaceClient, InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

/** The implementation under test: its calculators print their answers through a callback. */
class Init implements InitInterface {
  calculators = 0;
  makePrinter(): PrinterInterface {
    return { print: () => {} };
  }
  makeCalculator(print: PrinterInterface | null): CalculatorInterface {
    this.calculators++;
    return {
      solveEquation: async (eqn) => {
        await print?.print(`${eqn} = ${evaluate(eqn)}`);
      },
    };
  }
}

/** A tiny evaluator for "a*b" and "a+b". */
function evaluate(eqn: string): number {
  const [a, op, b] = eqn.split(/([*+])/);
  return op === "*" ? Number(a) * Number(b) : Number(a) + Number(b);
}

it("solves an equation and prints the answer through a callback", async () => {
  // `await using`: the leak check runs when the test ends, even if an assertion fails.
  await using s = await createTestSetup({ impl: new Init(), Server: InitInterfaceServer, Client: InitInterfaceClient });
  const printed: string[] = [];
  await using calc = await s.client.makeCalculator({ print: (text) => void printed.push(text) });
  await calc.solveEquation("6*7");
  expect(printed).toEqual(["6*7 = 42"]);
  expect(s.impl.calculators).toBe(1);
});
// example:end
