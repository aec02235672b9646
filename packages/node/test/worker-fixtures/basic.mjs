// Worker for packages/node/test/worker.test.ts: attaches to the loop from workerData, runs the
// scenario named in workerData.scenario, reports one message to the parent, then lets the thread
// end (the loop port is unref'd, so an idle attached worker exits on its own).
import { MessageChannel, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { attachLoop, callSync } from "../../dist/worker/index.js";

const loop = attachLoop(workerData.handle);
const events = [];

function err(e) {
  return { name: e?.name, message: e?.message, kind: e?.kind, code: e?.code, isTypeError: e instanceof TypeError };
}

const scenarios = {
  fifo() {
    for (let i = 0; i < workerData.n; i++) loop.post("append", i);
    return loop.sync("get");
  },
  echo() {
    return loop.sync("echo", workerData.data);
  },
  errors() {
    const out = {};
    try { loop.sync("fail"); } catch (e) { out.fail = err(e); }
    try { loop.sync("failAsync"); } catch (e) { out.failAsync = err(e); }
    try { loop.sync("nope"); } catch (e) { out.nope = err(e); }
    return out;
  },
  closures() {
    const out = {};
    try { loop.post("append", { nested: [1, { f() { return 1; } }] }); } catch (e) { out.post = err(e); }
    try { loop.sync("echo", () => 1); } catch (e) { out.sync = err(e); }
    try { loop.sync("returnsFunction"); } catch (e) { out.reply = err(e); }
    out.after = loop.sync("echo", "still works");
    return out;
  },
  port() {
    const { port1, port2 } = new MessageChannel();
    const r = loop.sync("usePort", { port: port2, text: "hi" });
    const m = receiveMessageOnPort(port1);
    port1.close();
    return { r, m: m?.message };
  },
  callbackWhileBlocked() {
    loop.listen("q", (n) => {
      events.push(`callback ${n} (waiting: ${loop.waiter.waiting})`);
      loop.sendChannel("a", n * 2);
    });
    const r = loop.sync("ask", 21);
    events.push(`sync returned ${r}`);
    return events;
  },
  nested() {
    loop.listen("q", (n) => {
      events.push(`callback ${n} (waiting: ${loop.waiter.waiting})`);
      const d = loop.sync("double", n); // a blocking call from inside a callback run while blocked
      events.push(`nested sync returned ${d} (waiting: ${loop.waiter.waiting})`);
      loop.sendChannel("a", d);
    });
    const r = loop.sync("ask", 5);
    events.push(`outer sync returned ${r}`);
    return events;
  },
  callSyncJobs() {
    return callSync(() => Promise.resolve(20).then((v) => v + 22));
  },
  callSyncValue() {
    return callSync(() => "plain");
  },
  callSyncReject() {
    try { callSync(() => Promise.reject(new RangeError("bad"))); } catch (e) { return err(e); }
    return "no error";
  },
  callSyncChannel() {
    let resolve;
    loop.listen("res", (v) => resolve(v));
    return callSync(() => {
      const p = new Promise((r) => { resolve = r; });
      loop.sendChannel("req", 7);
      return p.then((v) => `got ${v}`);
    });
  },
  async callSyncInJob() {
    await null;
    try { callSync(() => 1); } catch (e) { return err(e); }
    return "no error";
  },
  blockUntilClosed() {
    try { loop.sync("hang"); } catch (e) { return { error: err(e), isClosed: loop.isClosed }; }
    return "returned";
  },
  interrupted() {
    const out = {};
    try { loop.sync("hang"); } catch (e) { out.first = err(e); }
    out.second = loop.sync("echo", "a later wait is not interrupted");
    return out;
  },
  blockForever() {
    loop.sync("hang"); // the test terminates this worker while it is blocked here
    return "unreachable";
  },
  detach() {
    loop.sync("echo", 1);
    loop.close();
    try { loop.post("append", 1); } catch (e) { return err(e); }
    return "no error";
  },
};

// Run from a macrotask, not from the module's top level (which runs inside a promise job).
setImmediate(async () => {
  let msg;
  try {
    msg = { ok: true, value: await scenarios[workerData.scenario]() };
  } catch (e) {
    msg = { ok: false, error: err(e) };
  }
  parentPort.postMessage(msg);
  parentPort.close();
});
