/**
 * The consumer app's own tests (loop thread; run with `node --test dist/testing.test.js`): the
 * installed @multiprocess-ts/testing helpers on the app's generated schema (createTestSetup with
 * its leak check on `await using`, the fenced memory transport), on the published FooInterface
 * schemas (createFooSetup), and the handle leak check. Each test ends with a leak check.
 */
import assert from "node:assert/strict";
import * as net from "node:net";
import { test } from "node:test";
import { assertNoHandleLeaks, createFooSetup, createTestSetup, handleBaseline, handleLeaks } from "@multiprocess-ts/testing";
import { AdderClient, AdderServer } from "./gen/calc.capnp.js";
import { AdderImpl } from "./impl.js";

test("createTestSetup serves the app's Adder; the fence holds a call until released", async () => {
  // `await using`: dispose runs the leak check when the test ends, even if an assertion fails.
  await using s = await createTestSetup({ impl: new AdderImpl("test setup"), Server: AdderServer, Client: AdderClient });
  assert.equal(await s.client.add(2, 3), 5);
  let told = "";
  assert.equal(await s.client.addAndTell(4, 5, { onResult: (text) => { told = text; } }), 9);
  assert.equal(told, "4 + 5 = 9, said the test setup");
  {
    await using counter = await s.client.makeCounter(7n);
    assert.equal(await counter.next(), 7n);
    assert.equal(await counter.next(), 8n);
  }
  s.clientTransport.fence();
  let settled = false;
  const sum = s.client.add(20, 22).finally(() => { settled = true; });
  // Wait for the call to reach the fence (a condition, not a delay); nothing crosses it.
  while (s.clientTransport.held === 0) await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, "a fenced call cannot complete");
  s.clientTransport.release();
  assert.equal(await sum, 42);
  console.log(`testing: createTestSetup add(20, 22) = 42 after release; leak check on dispose`);
});

test("createFooSetup runs upstream's FooInterface from the published schemas", async () => {
  await using s = await createFooSetup();
  assert.equal(await s.client.add(1, 2), 3);
  // FooInterface has no `construct`: its Context-taking methods need the ThreadMap exchange first.
  await s.client.initThreadMap();
  assert.equal(await s.client.callback({ call: (n) => n * 2 }, 21), 42);
  console.log(`testing: createFooSetup add(1, 2) = 3, callback(21) = 42`);
});

test("the handle leak check names a server left open, and passes once it is closed", async () => {
  const baseline = handleBaseline();
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const leaks = handleLeaks(baseline);
  assert.ok(leaks.length > 0, "an open server is reported");
  await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
  await assertNoHandleLeaks(baseline);
  console.log(`testing: handle leak check reported ${leaks.join(", ")}; clean after close`);
});
