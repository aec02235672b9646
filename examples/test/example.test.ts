// The example end to end: mpexample spawns mpprinter and mpcalculator (real processes, built .js),
// and the calculator's answers come out of the printer child's stdout.
import { describe, it, expect } from "vitest";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { main } from "../dist/mpexample.js";
import { evaluate } from "../dist/calc.js";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";

const MPEXAMPLE = fileURLToPath(new URL("../dist/mpexample.js", import.meta.url));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MPEXAMPLE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("mpexample", () => {
  it("solves 1+2 by default and prints through the printer process", async () => {
    const r = await run([]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("Wow 1+2, that's a tough one. The answer is 3.\n");
    expect(r.code).toBe(0);
  });

  it("solves several equations in order and reports bad ones", async () => {
    const r = await run(["2*(3+4)", "10/4", "1+"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")).toEqual([
      "Wow 2*(3+4), that's a tough one. The answer is 14.",
      "Wow 10/4, that's a tough one. The answer is 2.5.",
      'Wow 1+, that\'s a tough one. I cannot solve it: unexpected end of equation "1+".',
      "",
    ]);
  });

  it("the answer arrives on the printer child's own stdout (in-process parent)", async () => {
    const baseline = handleBaseline();
    let printerOut = "";
    let printerPid = 0;
    let outEnded: Promise<void> | undefined;
    await main(["6*7"], {
      printerStdio: ["ignore", "pipe", "inherit"],
      onPrinter: (child) => {
        printerPid = child.pid!;
        child.stdout!.setEncoding("utf8").on("data", (d: string) => (printerOut += d));
        outEnded = new Promise((resolve) => child.stdout!.once("end", () => resolve()));
      },
    });
    await outEnded; // the child has exited; read its stdout to the end
    expect(printerPid).toBeGreaterThan(0);
    expect(printerOut).toBe("Wow 6*7, that's a tough one. The answer is 42.\n");
    await assertNoHandleLeaks(baseline);
  });

  it("evaluate handles precedence, parentheses and signs", () => {
    expect(evaluate("1+2*3")).toBe(7);
    expect(evaluate("(1+2)*3")).toBe(9);
    expect(evaluate("-4+10/5")).toBe(-2);
    expect(() => evaluate("2**3")).toThrow();
  });
});
