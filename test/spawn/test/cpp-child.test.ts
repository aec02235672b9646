// spawnProcessSocket with a C++ child that follows libmultiprocess's convention (the inherited
// socketpair fd NUMBER in argv): test/interop's reference peer built against Debian's
// libcapnp-rpc, in `serve --fd <n>` mode. Shows the parent side works with a non-Node child.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { DisconnectedError, RpcConnection, localCapability, streamTransport, writeCap } from "@multiprocess-ts/capnp";
import { spawnProcessSocket, waitProcess } from "@multiprocess-ts/node";
// test/interop is a private workspace package; its built helpers are imported by path.
import { Tracker, WatcherServer, add, buildPeer, schema as s, stats } from "@multiprocess-ts/test-interop";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

const idle = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  await assertNoHandleLeaks(baseline);
});

describe("spawnProcess with a C++ child (libmultiprocess fd convention)", () => {
  it("passes the fd number in argv, talks RPC over the socketpair, and the child exits 0 when we close", async () => {
    const bin = await buildPeer();
    let argvSeen: string[] = [];
    const { child, socket } = await spawnProcessSocket(bin, (fd) => (argvSeen = ["serve", "--fd", String(fd)]), {
      stdio: ["ignore", "ignore", "inherit"],
    });
    expect(argvSeen).toEqual(["serve", "--fd", "3"]);
    const rpc = new RpcConnection(streamTransport(socket), { name: "cpp-child" });
    const calc = rpc.bootstrap();
    expect(await add(calc, 40, 2)).toBe(42);
    expect(await stats(calc)).toEqual({ live: 0, held: 0 });
    calc.close();
    await rpc.close();
    expect(rpc.stats()).toEqual(idle);
    expect(await waitProcess(child)).toEqual({ code: 0, signal: null });
  }, 300_000); // the first run compiles the C++ peer (cached afterwards)

  it("SIGKILL of the C++ child mid-call rejects the call with DisconnectedError", async () => {
    const bin = await buildPeer();
    const { child, socket } = await spawnProcessSocket(bin, (fd) => ["serve", "--fd", String(fd)], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    const rpc = new RpcConnection(streamTransport(socket), { name: "cpp-child-kill" });
    const calc = rpc.bootstrap();
    const watcher = new WatcherServer(new Tracker());
    const cap = localCapability(watcher);
    const req = calc.newCall(s.CALC_ID, s.CalcMethod.hang, s.OneCap);
    writeCap(req.params, 0, cap);
    cap.close();
    const pending = req.send();
    await watcher.started.promise; // the child is inside hang() now
    child.kill("SIGKILL");
    await expect(Promise.resolve(pending)).rejects.toBeInstanceOf(DisconnectedError);
    expect(await waitProcess(child)).toEqual({ code: null, signal: "SIGKILL" });
    // The link ends either way; how depends on the kernel: a clean EOF (the child had read all we
    // sent: `closed` is undefined) or a reset / EPIPE (bytes of ours were still unread or in
    // flight: a DisconnectedError). Our Return to `started` is written in the read's own
    // microtask (docs/rpc.md "Syscalls per call"), before or after the kill, so both happen.
    // The call above failed with DisconnectedError either way.
    const end = await rpc.closed;
    if (end !== undefined) expect(end).toBeInstanceOf(DisconnectedError);
    calc.close();
    await rpc.close();
    expect(rpc.stats()).toEqual(idle);
  }, 300_000);
});
