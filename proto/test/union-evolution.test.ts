/**
 * Schema evolution of unions (docs/mpgen.md, "Unions"): a struct written with a newer schema
 * whose union has a member ours lacks reads as the common fields and `which: <discriminant>`
 * (capnp's rule: readers tolerate unknown members; C++ `which()` returns the raw value), and
 * writing such a value back throws `UnknownUnionMemberError` before anything is sent. Uses the
 * two versions of `EvolvedV1`/`EvolvedV2` and `EvolvingV1`/`EvolvingV2` in proto/test/fixtures.capnp;
 * the C++ check uses `capnp encode` (needs `capnp` on PATH, fails loudly otherwise).
 *
 * Threading: loop thread (the test's thread); client and server run on two event loops of it.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as $ from "capnp-ts";
import { RemoteError, UnknownUnionMemberError } from "@multiprocess-ts/runtime";
import type { ProxyServerCtor, ServerMethod } from "@multiprocess-ts/runtime/gen";
import { createTestSetup } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import * as F from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import type { EvolvedV1, EvolvedV2, EvolvingV1, EvolvingV2 } from "@multiprocess-ts/proto/test/fixtures.capnp.js";

const PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCHEMA = path.join(PROTO, "test/fixtures.capnp");
const INCLUDES = [`-I${PROTO}`, `-I${path.join(PROTO, "../packages/gen/schema")}`];

/** Bytes of a V2 value written by the C++ implementation (`capnp encode`). */
function encodeV2(text: string): Uint8Array {
  return new Uint8Array(execFileSync("capnp", ["encode", ...INCLUDES, SCHEMA, "EvolvedV2"], { input: text }));
}

/** Writes `v` with the V2 writer and reads the same bytes with the V1 reader (a peer with a newer schema). */
function v2AsV1(v: EvolvedV2): EvolvedV1 {
  const msg = new $.Message();
  F.writeEvolvedV2(msg.initRoot(F.EvolvedV2$Struct), v);
  return F.readEvolvedV1(new $.Message(msg.toArrayBuffer(), false).getRoot(F.EvolvedV1$Struct));
}

/** A newer build of the same interface: version 2's methods served under version 1's interface id (or the reverse). */
function servedAs<I>(Server: ProxyServerCtor<I>, interfaceId: bigint): ProxyServerCtor<I> {
  const methods: readonly ServerMethod<I>[] = Server.methods.map((m) => ({ ...m, method: { ...m.method, interfaceId } }));
  return class extends (Server as unknown as new (...a: ConstructorParameters<ProxyServerCtor<I>>) => InstanceType<ProxyServerCtor<I>>) {
    static readonly interfaceId = interfaceId;
    static readonly methods = methods;
  } as unknown as ProxyServerCtor<I>;
}

describe("a union member unknown to this schema (a newer peer's)", () => {
  it("reads as the common fields and the raw discriminant, in unnamed and named unions", () => {
    expect(v2AsV1({ name: "t", mode: { which: "fast" }, which: "tags", tags: ["a", "b"] })).toEqual({ name: "t", mode: { which: "fast" }, which: 2 });
    expect(v2AsV1({ name: "c", mode: { which: "careful", careful: 1.5 }, which: "count", count: 7 })).toEqual({ name: "c", mode: { which: 2 }, which: "count", count: 7 });
    // Known members of both versions read as before.
    expect(v2AsV1({ name: "k", mode: { which: "slow", slow: 3 }, which: "label", label: "x" })).toEqual({ name: "k", mode: { which: "slow", slow: 3 }, which: "label", label: "x" });
    // The same from bytes the C++ implementation wrote with the newer schema.
    const cpp = F.readEvolvedV1(new $.Message(encodeV2('(name = "cpp", tags = ["z"], mode = (careful = 2.5))'), false).getRoot(F.EvolvedV1$Struct));
    expect(cpp).toEqual({ name: "cpp", mode: { which: 2 }, which: 2 });
    // Compile-time (pnpm typecheck): the unknown alternative is told apart by a numeric `which`.
    if (typeof cpp.which === "number") expect(cpp.which).toBe(F.EvolvedV2$Struct.TAGS);
    else throw new Error("expected an unknown member");
  });

  it("writing an unknown member back throws UnknownUnionMemberError (type and tag named)", () => {
    const unknown = v2AsV1({ name: "t", mode: { which: "fast" }, which: "tags", tags: [] });
    const write = (v: EvolvedV1): unknown => F.writeEvolvedV1(new $.Message().initRoot(F.EvolvedV1$Struct), v);
    const err = (() => { try { write(unknown); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(UnknownUnionMemberError);
    expect(err).toBeInstanceOf(RangeError);
    expect(err).toMatchObject({ code: "MP_ERR_UNKNOWN_MEMBER", type: "EvolvedV1", which: 2 });
    expect((err as Error).message).toMatch(/cannot write union member 2 of EvolvedV1: this schema does not know it/);
    // The named union is checked too (the unnamed member is known here).
    expect(() => write({ name: "m", mode: { which: 2 }, which: "count", count: 1 })).toThrow(
      expect.objectContaining({ code: "MP_ERR_UNKNOWN_MEMBER", type: "EvolvedV1.mode", which: 2 }) as Error,
    );
  });

  it("through a connection: an older client reads a newer server's member, and cannot send it back", async () => {
    const latest: EvolvedV2 = { name: "new", mode: { which: "careful", careful: 0.25 }, which: "tags", tags: ["t"] };
    const impl: EvolvingV2 = { echo: (v) => v, latest: () => latest };
    await using s = await createTestSetup<EvolvingV2, EvolvingV2, F.EvolvingV1Client>({
      impl, Server: servedAs(F.EvolvingV2Server, F.EvolvingV1Server.interfaceId), Client: F.EvolvingV1Client,
    });
    const got = await s.client.latest();
    expect(got).toEqual({ name: "new", mode: { which: 2 }, which: 2 });
    // Refused while building the params: the call is never sent.
    await expect(s.client.echo(got)).rejects.toBeInstanceOf(UnknownUnionMemberError);
    expect(await s.client.echo({ name: "ok", mode: { which: "fast" }, which: "count", count: 1 })).toEqual({ name: "ok", mode: { which: "fast" }, which: "count", count: 1 });
  });

  it("through a connection: an older server reads a newer client's member; returning it fails the call", async () => {
    const seen: EvolvedV1[] = [];
    const impl: EvolvingV1 = {
      echo: (v) => { seen.push(v); return v; },
      latest: () => ({ name: "old", mode: { which: "slow", slow: 9 }, which: "label", label: "l" }),
    };
    await using s = await createTestSetup<EvolvingV1, EvolvingV1, F.EvolvingV2Client>({
      impl, Server: servedAs(F.EvolvingV1Server, F.EvolvingV2Server.interfaceId), Client: F.EvolvingV2Client,
    });
    expect(await s.client.latest()).toEqual({ name: "old", mode: { which: "slow", slow: 9 }, which: "label", label: "l" });
    const err: unknown = await s.client.echo({ name: "x", mode: { which: "fast" }, which: "tags", tags: ["q"] }).then(() => undefined, (e: unknown) => e);
    expect(seen).toEqual([{ name: "x", mode: { which: "fast" }, which: 2 }]);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err).toMatchObject({ kind: "failed", remoteName: "RangeError" });
    expect((err as Error).message).toMatch(/cannot write union member 2 of EvolvedV1/);
  });
});
