/**
 * docs/usage.md, "Errors from the other side": what a server's error looks like to the caller
 * (RemoteError: remoteName, code, remoteStack, the caller's own frames in `stack`).
 */
import { EventLoop, RemoteError, RpcError } from "@multiprocess-ts/runtime";
import type { CalculatorInterfaceClient } from "@multiprocess-ts/proto/example/calculator.capnp.js";

export async function solveOrExplain(calc: CalculatorInterfaceClient): Promise<string> {
  try {
    await calc.solveEquation("1/0");
    return "solved";
  } catch (e) {
    if (e instanceof RemoteError) {
      // The server threw, e.g., `new RangeError("division by zero")`:
      //   e.message === "division by zero", e.remoteName === "RangeError",
      //   e.code === "MP_ERR_FAILED" (or the thrown error's own string `code`),
      //   e.stack names this function (solveOrExplain), e.remoteStack is the server's stack
      //   when the server's loop sends stacks (below), else undefined.
      return `${e.remoteName ?? "Error"} on the server: ${e.message} (${e.code})`;
    }
    if (e instanceof RpcError) return `call failed: ${e.code}`; // disconnects, cancellation, ...
    throw e; // a bug on our side
  }
}

// Server side: send stacks with the exceptions of every connection of this loop (off by
// default: a stack shows file paths). Per connection: ConnectionOptions.errorStacks.
export const serverLoop = new EventLoop("server", { errorStacks: true });
