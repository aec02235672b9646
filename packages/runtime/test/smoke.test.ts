import { describe, expect, it } from "vitest";
import { connectPair, FooClient, FooImpl, FooServer } from "./fixtures.js";

describe("smoke", () => {
  it("add round trip", async () => {
    const impl = new FooImpl();
    const p = await connectPair(impl, FooServer, FooClient);
    expect(await p.client.add(2, 3)).toBe(5);
    await p.dispose();
    expect(impl.disposeCount).toBe(1);
  });
});
