/**
 * Child program for test/spawn: serves the example InitInterface on the socketpair end whose fd
 * number is argv[2] (as spawned by spawnProcess), with a Printer whose `print` understands a few
 * commands so tests can drive the child from the parent:
 *
 *   print("exit:N")  the child exits with status N in the middle of the call
 *   print("hang")    writes "hanging" to stdout and never returns (the parent kills the child)
 *   print(text)      writes "printed: <text>" to stdout
 *
 * At start it writes one JSON line `{"argv": [...], "pid": N}`; when its loop ends (the parent
 * disconnected) it writes "loop done <rpc stats JSON>" and exits with status 0 by running out of work.
 */
import { serveSpawned } from "@multiprocess-ts/node";
import { InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

class TestPrinter implements PrinterInterface {
  print(text: string): void | Promise<void> {
    const exit = /^exit:(\d+)$/.exec(text);
    if (exit) process.exit(Number(exit[1]));
    if (text === "hang") {
      process.stdout.write("hanging\n");
      return new Promise<void>(() => {});
    }
    process.stdout.write(`printed: ${text}\n`);
  }
}

class TestInit implements InitInterface {
  makePrinter(): PrinterInterface {
    return new TestPrinter();
  }
  makeCalculator(): CalculatorInterface {
    throw new Error("this child has no calculator");
  }
}

process.stdout.write(`${JSON.stringify({ argv: process.argv.slice(2), pid: process.pid })}\n`);
const connection = await serveSpawned(process.argv[2], new TestInit(), InitInterfaceServer);
process.stdout.write(`loop done ${JSON.stringify(connection.rpc.stats())}\n`);
