/**
 * The example schemas (init/calculator/printer) through generated proxies: `construct` runs on
 * connect (InitInterfaceClient.$construct), interface results come back as client proxies, a
 * capability passed in one call (the printer) is used by the callee, and `close()` on a client of
 * an interface with `destroy` disposes the remote implementation.
 *
 * Threading: loop thread (the test's thread).
 */
import { createTestSetup } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import { InitInterfaceClient, InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";

describe("example Init / Calculator / Printer round trip", () => {
  it("makePrinter, makeCalculator(printer), solveEquation → print, close → destroy", async () => {
    const printed: string[] = [];
    let calcDisposed = 0;
    let printerDisposed = 0;
    const init: InitInterface = {
      makePrinter: (): PrinterInterface & AsyncDisposable => ({
        print: (text) => { printed.push(text); },
        async [Symbol.asyncDispose]() { printerDisposed++; },
      }),
      makeCalculator: (printer): CalculatorInterface & AsyncDisposable => ({
        solveEquation: async (eqn) => { await printer!.print(`${eqn} = 2`); },
        async [Symbol.asyncDispose]() {
          calcDisposed++;
          await (printer as unknown as AsyncDisposable)[Symbol.asyncDispose]();
        },
      }),
    };
    await using s = await createTestSetup({ impl: init, Server: InitInterfaceServer, Client: InitInterfaceClient });
    const client = s.client;
    expect(s.clientTransport.wireLog.some((w) => w.which === "call")).toBe(true); // construct was sent
    // A printer made by the server, used from the client.
    const printer = await client.makePrinter();
    await printer.print("direct");
    // A printer implemented here, used by the server's calculator (a callback into this side).
    const local: string[] = [];
    let localDisposed = 0;
    const calc = await client.makeCalculator({
      print: (text) => { local.push(text); },
      async [Symbol.asyncDispose]() { localDisposed++; },
    } as PrinterInterface);
    await calc.solveEquation("1+1");
    expect(printed).toEqual(["direct"]);
    expect(local).toEqual(["1+1 = 2"]);
    await calc.close(); // CalculatorInterface declares destroy: the server disposes it now…
    expect(calcDisposed).toBe(1);
    expect(localDisposed).toBe(1); // …and its printer proxy's close() destroyed our object.
    await printer.close();
    await s.dispose(); // closes the client, waits for both loops, runs the leak check
    expect(printerDisposed).toBe(1);
  });
});
