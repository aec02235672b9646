// Smoke test: one call through a generated client and server (createTestSetup), leak-free.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { FooImpl, fooSetup } from "./fixtures.js";

describe("smoke", () => {
  it("add round trip", async () => {
    const impl = new FooImpl();
    {
      await using p = await fooSetup(impl);
      expect(await p.client.add(2, 3)).toBe(5);
    }
    expect(impl.disposeCount).toBe(1);
  });
});
