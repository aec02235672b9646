// Worker for packages/node/test/worker-bridge.test.ts: calls capabilities the loop shares, at the
// engine level (Capability.newCall), and hosts a callback capability the loop calls back.
import { parentPort, threadId, workerData } from "node:worker_threads";
import * as capnp from "capnp-ts";
import { localCapability, readCap, writeCap } from "@multiprocess-ts/capnp";
import { attachLoop, workerRpc } from "../../dist/worker/index.js";

// Same layout as the test's Args: a, b / result (int32s), pointers 0 and 1.
class Args extends capnp.Struct {
  static _capnp = { displayName: "Args", id: "0", size: new capnp.ObjectSize(8, 2) };
  get a() { return capnp.Struct.getInt32(0, this); }
  set a(v) { capnp.Struct.setInt32(0, v, this); }
  get b() { return capnp.Struct.getInt32(4, this); }
  set b(v) { capnp.Struct.setInt32(4, v, this); }
  get text() { return capnp.Struct.getText(1, this); }
  set text(v) { capnp.Struct.setText(1, v, this); }
}
const CALC = 0x1234n;
const CB = 0x5678n;

const loop = attachLoop(workerData.handle);
const rpc = workerRpc(loop);
const log = [];

function err(e) {
  return { name: e?.name, message: e?.message, kind: e?.kind, code: e?.code };
}

async function call(cap, mid, build) {
  const req = cap.newCall(CALC, mid, Args);
  build?.(req.params);
  const resp = await req.send();
  try {
    const r = resp.results(Args);
    return { a: r.a, text: r.text, cap: readCap(r, 0) };
  } finally {
    resp.close();
  }
}

/** A callback hosted here: multiplies by 10 and says which thread it ran on. */
let releasedResolve;
const callbackReleased = new Promise((r) => { releasedResolve = r; });
const callbackServer = {
  dispatch(c) {
    const p = c.params(Args);
    log.push(`callback(${p.a}) on thread ${threadId}, waiting=${loop.waiter.waiting}`);
    const r = c.results(Args);
    r.a = p.a * 10;
  },
  onRelease() { log.push("callback released"); releasedResolve(); },
};

const scenarios = {
  async add() {
    const calc = await rpc.get("calc");
    const r = await call(calc, 0, (p) => { p.a = 2; p.b = 3; });
    calc.close();
    return r.a;
  },
  async sequential() {
    // Nothing but the call in flight keeps this thread alive between calls (the loop port is
    // ref'd per call, unref'd when none is pending), also after an idle macrotask.
    const calc = await rpc.get("calc");
    let sum = 0;
    for (let i = 0; i < 100; i++) sum += (await call(calc, 0, (p) => { p.a = i; p.b = 1; })).a;
    await new Promise((r) => setImmediate(r));
    const both = await Promise.all([1000, 2000].map((a) => call(calc, 0, (p) => { p.a = a; p.b = 0; })));
    calc.close();
    return sum + both[0].a + both[1].a;
  },
  addSync() {
    const calc = rpc.getSync("calc");
    const r = loop.callSync(() => call(calc, 0, (p) => { p.a = 20; p.b = 22; }));
    calc.close();
    return r.a;
  },
  async callbackSync() {
    const calc = rpc.getSync("calc");
    const cb = localCapability(callbackServer);
    // Blocks this worker; the loop calls cb meanwhile, and it runs here through the Waiter.
    const r = loop.callSync(() => call(calc, 1, (p) => { writeCap(p, 0, cb); p.a = 7; }));
    cb.close();
    calc.close();
    log.push(`result ${r.a}`);
    // The loop drops its stand-in once the call is over: its release may come after the return
    // (the worker then has nothing in flight, so it stays alive on purpose while it waits).
    const keep = loop.keepAlive();
    await callbackReleased;
    keep[Symbol.dispose]();
    return { log, threadId };
  },
  async withContext() {
    // Method 6 has its Proxy.Context at pointer 1 (as a generated FooServer's methods say).
    rpc.registerInterfaces({ methods: [{ method: { interfaceId: CALC, methodId: 6, context: 1 } }] });
    const calc = await rpc.get("calc");
    const a = await call(calc, 6);
    const b = await call(calc, 0, (p) => { p.a = 1; p.b = 1; }); // no Context: nothing to fill
    calc.close();
    return { withContext: a.a, add: b.a };
  },
  async capInResults() {
    const calc = await rpc.get("calc");
    const r = await call(calc, 2, (p) => { p.text = "counter"; });
    const counter = r.cap;
    const a = await call(counter, 3);
    const b = await call(counter, 3);
    counter.close();
    calc.close();
    return [r.text, a.a, b.a];
  },
  async errors() {
    const calc = await rpc.get("calc");
    const out = {};
    try { await call(calc, 4); } catch (e) { out.thrown = err(e); }
    try { await rpc.get("nothing"); } catch (e) { out.unknown = err(e); }
    calc.close();
    return out;
  },
  async hangThenReport() {
    const calc = await rpc.get("calc");
    const p = call(calc, 5);
    parentPort.postMessage({ started: true });
    try { await p; } catch (e) { return err(e); } finally { calc.close(); }
    return "returned";
  },
  async frameOrder() {
    // What this worker sends, in order: "frame" for a flat frame, else the RpcMsg's op.
    const sent = [];
    const sendFrame = loop.sendFrame.bind(loop);
    loop.sendFrame = (f) => { sent.push("frame"); sendFrame(f); };
    const sendChannel = loop.sendChannel.bind(loop);
    loop.sendChannel = (ch, body, t) => { sent.push(body.op); sendChannel(ch, body, t); };
    const calc = await rpc.get("calc");
    // A capability-free call (a frame), then at once a call with a capability (an object
    // message): the loop must see them in this order, and answer both.
    const first = call(calc, 0, (p) => { p.a = 1; p.b = 2; });
    const cb = localCapability(callbackServer);
    const second = call(calc, 1, (p) => { writeCap(p, 0, cb); p.a = 7; });
    cb.close();
    // The worker's last reference goes right after a frame call on it: the release (an object
    // message) must not overtake the call (the loop would not know the target any more).
    const last = await rpc.get("calc");
    const third = call(last, 0, (p) => { p.a = 20; p.b = 1; });
    last.close();
    const [a, b, c] = await Promise.all([first, second, third]);
    calc.close();
    const keep = loop.keepAlive();
    await callbackReleased;
    keep[Symbol.dispose]();
    return { sent, a: a.a, b: b.a, c: c.a };
  },
  async forwardedAtSend() {
    // One engine pass (rpc/forward.ts): the call is on its way to the loop when send() returns,
    // with no dispatch microtask in this worker first.
    const calc = await rpc.get("calc");
    const req = calc.newCall(CALC, 0, Args);
    req.params.a = 40;
    req.params.b = 2;
    const pending = req.send();
    const atSend = rpc.stats().questions;
    const resp = await pending;
    const a = resp.results(Args).a;
    resp.close();
    calc.close();
    return { atSend, a };
  },
  async pipelined() {
    // A call on a capability in the results of a call still in flight (a local promise here).
    const calc = await rpc.get("calc");
    const req = calc.newCall(CALC, 2, Args);
    req.params.text = "piped";
    const pending = req.send();
    const counter = pending.pipeline(0);
    const first = call(counter, 3);
    const r = await pending;
    const text = r.results(Args).text;
    r.close();
    const a = (await first).a;
    const b = (await call(counter, 3)).a;
    counter.close();
    calc.close();
    return [text, a, b];
  },
  async cancelFromWorker() {
    const calc = await rpc.get("calc");
    const pending = calc.newCall(CALC, 5, Args).send();
    const settled = pending.then(() => "returned", (e) => err(e));
    parentPort.postMessage({ started: true });
    await new Promise((r) => parentPort.once("message", r)); // the loop call is running
    pending.cancel();
    const out = await settled;
    // A fence: the loop answers in order, so once this call returned, the canceled call's own
    // return (the loop's CanceledError) has arrived too and its question is gone.
    out.after = (await call(calc, 0, (p) => { p.a = 1; p.b = 2; })).a;
    calc.close();
    return out;
  },
  async hangForever() {
    const calc = await rpc.get("calc");
    void call(calc, 5).catch(() => {});
    parentPort.postMessage({ started: true });
    await new Promise(() => {}); // the test terminates this worker here
  },
};

setImmediate(async () => {
  let msg;
  try {
    msg = { ok: true, value: await scenarios[workerData.scenario]() };
  } catch (e) {
    msg = { ok: false, error: err(e) };
  }
  msg.stats = rpc.stats();
  parentPort.postMessage(msg);
  parentPort.close();
});
