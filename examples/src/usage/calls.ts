/**
 * docs/usage.md, "Cancellation and timeouts": per-call options on generated client methods,
 * client-wide defaults, and the CallContext a server implementation receives.
 */
import { CanceledError } from "@multiprocess-ts/capnp";
import { TimeoutError, setCallDefaults, type CallContext } from "@multiprocess-ts/runtime";
import type { CalculatorInterface, CalculatorInterfaceClient } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";

// Server side: every implementation method may take a trailing `ctx?: CallContext`.
export class PatientCalculator implements CalculatorInterface {
  constructor(private readonly print: PrinterInterface | null) {}

  async solveEquation(eqn: string, ctx?: CallContext): Promise<void> {
    // ctx.signal aborts when the caller cancels (its Finish arrives) or the connection ends.
    await work(1000, ctx?.signal);
    // A CallContext is valid CallOptions: the nested call is canceled together with this one.
    await this.print?.print(`solved ${eqn}\n`, ctx);
  }
}

function work(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

// Client side: the trailing `options` argument of every generated method.
export async function callOptionsExample(calc: CalculatorInterfaceClient): Promise<void> {
  try {
    await calc.solveEquation("1+1", { timeout: 300 }); // milliseconds
  } catch (e) {
    if (!(e instanceof TimeoutError)) throw e; // code MP_ERR_TIMEOUT; Finish was sent
  }

  const ac = new AbortController();
  const call = calc.solveEquation("2+2", { signal: ac.signal });
  ac.abort(); // the call rejects at once with CanceledError (MP_ERR_CANCELED)
  await call.catch((e: unknown) => {
    if (!(e instanceof CanceledError)) throw e;
  });

  // Defaults for every call made through this client; a call's own options win field by field.
  setCallDefaults(calc, { timeout: 10_000 });
  await calc.solveEquation("3+3");
  await calc.solveEquation("4+4", { timeout: 60_000 });
}
