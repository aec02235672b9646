# Conformance schema: the surface our Cap'n Proto RPC engine (packages/capnp) is checked against
# the C++ reference (Debian libcapnp-rpc 0.9.2). Served and called by test/interop/cpp/peer.c++
# and by the TS servers in test/interop/src/servers.ts. Hand-written TS structs for it live in
# test/interop/src/schema.ts; keep both in sync (test/interop/test/schema.test.ts checks ids and
# layout against `capnp compile`).
@0xc10631e74f6e74d6;

enum Kind {
  # rpc.capnp Exception.Type, in the same order.
  failed @0;
  overloaded @1;
  disconnected @2;
  unimplemented @3;
}

struct Ack {
  # Named (not an implicit $Results struct) so that reflect can tail-call notify.
  ack @0 :Int32;
}

interface Callback {
  notify @0 (value :Int32, msg :Text) -> Ack;
  # Implementations answer ack = value + 1 and record (value, msg).
}

interface Counter {
  inc @0 (by :Int32) -> (value :Int32);
  get @1 () -> (value :Int32);
}

interface Calc {
  add @0 (a :Int32, b :Int32) -> (sum :Int32);
  # Wrapping 32-bit addition.
  echo @1 (text :Text, data :Data) -> (text :Text, data :Data);
  join @2 (parts :List(Text)) -> (joined :Text, count :UInt32);
  # joined = parts separated by ",".
  sum @3 (values :List(Int32)) -> (total :Int64);

  subscribe @4 (cb :Callback, value :Int32) -> (ack :Int32);
  # Calls cb.notify(value, "subscribe") before returning; ack is that call's ack.
  makeCounter @5 (start :Int32) -> (counter :Counter);
  readCounter @6 (counter :Counter) -> (value :Int32, local :Bool);
  # Calls counter.get(). local = the callee recognised counter as one of its own objects (the
  # caller passed it back as receiverHosted rather than wrapping it in a proxy).
  makeCounterLater @7 (start :Int32) -> (counter :Counter);
  # Returns a promise capability that resolves (Resolve message) to a new Counter only when
  # resolvePending is called.
  resolvePending @8 () -> (count :UInt32);
  # Resolves every promise made by makeCounterLater so far; count = how many.

  identity @9 (cb :Callback) -> (cb :Callback);
  # Returns its argument; a call pipelined on the result is reflected back to the caller.
  reflect @10 (cb :Callback, value :Int32) -> Ack;
  # Tail call: the results are those of cb.notify(value, "reflect") (Return.resultsSentElsewhere).

  register @11 (cb :Callback) -> ();
  # Keeps cb after returning (the libmultiprocess pattern); replaces any earlier one.
  fire @12 (value :Int32) -> (ack :Int32);
  # Calls the kept cb.notify(value, "fire").
  unregister @13 () -> ();
  # Drops the kept cb.

  fail @14 (kind :Kind, msg :Text) -> ();
  # Throws an exception of that type whose reason contains msg.
  hang @15 (watcher :Callback) -> ();
  # Never returns. Calls watcher.notify(1, "started") once running and, when the caller cancels
  # (Finish before Return), watcher.notify(2, "canceled").

  seq @16 (n :UInt32) -> (prev :UInt32);
  # Records n and returns the n recorded by the previous seq call on this Calc (0 at first).

  stats @17 () -> (live :UInt32, held :UInt32);
  # live = server objects of this peer alive besides the bootstrap Calc objects (Counters etc.);
  # held = capabilities of the peer's caller kept beyond a call (register, hang watchers).
}
