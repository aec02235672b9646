/**
 * End-to-end run of the mpgen golden fixture (packages/gen/test/fixtures/features.capnp) through
 * the runtime: the method mappings foo.capnp does not cover (several outputs as an object,
 * `hasResult`, `hasX` params, `wantX`, `$Proxy.name` on methods, a Text `$Proxy.exception`,
 * `std::function` with arguments, generic map entries with struct values, structs holding
 * capabilities, a second superclass, the `close` → `close_` rename, `construct` on connect).
 *
 * Threading: loop thread (the test's thread).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createTestSetup } from "@multiprocess-ts/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const GOLDEN = path.resolve(PROTO, "../packages/gen/test/fixtures/expected/features.capnp.ts");

let F: any;
let dir: string;

beforeAll(async () => {
  // The golden output imports only @multiprocess-ts/runtime (gen, gen/capnp, mp/proxy.capnp): give
  // it a temp dir whose node_modules is proto's.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mpgen-features-"));
  fs.copyFileSync(GOLDEN, path.join(dir, "features.capnp.ts"));
  fs.symlinkSync(path.join(PROTO, "node_modules"), path.join(dir, "node_modules"), "dir");
  F = await import(path.join(dir, "features.capnp.ts"));
});

afterAll(() => {
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

function scalars(over: Record<string, unknown> = {}): any {
  return {
    i8: 1, i16: 2, i32: 3, i64: 4n, u8: 5, u16: 6, u32: 7, u64: 8n, f32: 0.5, f64: 1.25, flag: false,
    color: F.Color.blue, text: "t", data: new Uint8Array([9]), nested: [[1, 2]], colors: [F.Color.red], texts: ["x"],
    renamedField: 10, ...over,
  };
}

describe("features.capnp Service round trip", () => {
  it("every Service method through a generated client/server pair", async () => {
    const notified: string[] = [];
    let listenerDisposed = 0;
    const service = {
      divide: (a: number, b: number) => ({ quotient: Math.trunc(a / b), remainder: a % b }),
      find: (name: string) => (name === "yes" ? scalars({ text: name }) : undefined),
      lookup: (key: string | undefined, wantValue: boolean) => (wantValue ? `value of ${key ?? "(none)"}` : undefined),
      doRename: (x: number) => x & 0xff,
      async listen(listener: any) {
        await listener.notify("hello");
        let n = 0n;
        return { get: () => ++n, async [Symbol.asyncDispose]() { await listener.close(); } };
      },
      run: async (handler: any) => `${await handler(2, true)}!`,
      shapes: (byName: Map<string, any>) => [...byName.values()],
      hold: (h: any) => h,
      fail: () => { throw new F.RuntimeError("it failed"); },
      close_: () => {},
    };
    {
      // createTestSetup runs construct; disposing it runs the leak check.
      await using s = await createTestSetup<any, any, any>({ impl: service, Server: F.ServiceServer, Client: F.ServiceClient });
      const client = s.client;

      expect(await client.divide(17, 5)).toEqual({ quotient: 3, remainder: 2 });
      expect((await client.find("yes")).text).toBe("yes");
      expect(await client.find("no")).toBeUndefined();
      expect(await client.lookup("k", true)).toBe("value of k");
      expect(await client.lookup(undefined, true)).toBe("value of (none)");
      expect(await client.lookup("k", false)).toBeUndefined();
      expect(await client.doRename(0x1234)).toBe(0x34);
      await expect(client.doRename(70000)).rejects.toBeInstanceOf(RangeError);

      const listener = {
        notify: (text: string) => { notified.push(text); return true; },
        async [Symbol.asyncDispose]() { listenerDisposed++; },
      };
      const counter = await client.listen(listener);
      expect(notified).toEqual(["hello"]);
      expect(await counter.get()).toBe(1n);
      expect(await counter.get()).toBe(2n);
      await counter.close(); // releases the server's counter → it closes its listener proxy → destroy

      expect(await client.run((n: number, b: boolean) => `${n}:${b}`)).toBe("2:true!");

      const circle = { name: "c", origin: { x: 1, y: 2 }, which: "circle", circle: 3 };
      const square = { name: "s", origin: { x: 0, y: 0 }, which: "square", square: 4 };
      const shapes = await client.shapes(new Map<string, object>([["c", circle], ["s", square]]));
      expect(shapes).toEqual([circle, square]);

      const held = await client.hold({ byName: new Map([["a", scalars()]]), shapes: [circle], cb: null });
      expect(held.byName.get("a")).toEqual(scalars());
      expect(held.cb).toBeNull();
      // A struct holding a capability: the converters take the call's IO.
      const held2 = await client.hold({ byName: new Map(), shapes: [], cb: { notify: () => true } });
      expect(held2.cb).toBeInstanceOf(F.ListenerClient);
      await held2.cb.close();

      const err = await client.fail().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(F.RuntimeError);
      expect(err.value).toBe("it failed");

      await client.close_(); // the capnp method `close`
      await client.close(); // the proxy's own close()
    }
    expect(listenerDisposed).toBe(1);
  });
});
