// The shared transport lifecycle (src/transport-lifecycle.ts) and write-side flow control
// (src/write-flow.ts) on their own: every transition, every guard, the early/held queue and the
// once-only asynchronous end report; the flow marks and the hard cap. Runs on the test's thread.
import { describe, expect, it, vi } from "vitest";
import {
  DEFAULT_WRITE_FLOW,
  LimitError,
  LinkState,
  resolveWriteFlow,
  TransportLifecycle,
  WriteFlow,
  type TransportSink,
} from "@multiprocess-ts/capnp";

function harness() {
  const events: string[] = [];
  const thrown: Error[] = [];
  const life = new TransportLifecycle({ name: "TestTransport", sinkThrew: (e) => void thrown.push(e) });
  const sink: TransportSink = {
    message: (m) => {
      const tag = m[0]![0]!;
      if (tag === 99) throw new Error("sink bug");
      events.push(`m${tag}`);
    },
    closed: (err) => void events.push(`closed:${err?.message ?? "clean"}`),
  };
  return { life, sink, events, thrown };
}
const m = (tag: number): Uint8Array[] => [new Uint8Array([tag, 0, 0, 0, 0, 0, 0, 0])];
const turn = (): Promise<void> => new Promise<void>((r) => queueMicrotask(r));

describe("TransportLifecycle", () => {
  it("queues messages until start, hands them over in order, refuses a second start", () => {
    const { life, sink, events } = harness();
    expect(life.state).toBe(LinkState.Open);
    expect(life.deliver(m(1))).toBe(true);
    expect(life.deliver(m(2))).toBe(true);
    expect(events).toEqual([]);
    life.start(sink);
    expect(events).toEqual(["m1", "m2"]);
    life.deliver(m(3));
    expect(events).toEqual(["m1", "m2", "m3"]);
    expect(() => life.start(sink)).toThrow(/TestTransport.start called twice/);
  });

  it("Open → Closing → Ended: sends stop at Closing, reads until the end, one async report", async () => {
    const { life, sink, events } = harness();
    life.start(sink);
    expect(life.canSend).toBe(true);
    expect(life.beginClose()).toBe(true);
    expect(life.state).toBe(LinkState.Closing);
    expect(life.canSend).toBe(false);
    expect(life.beginClose()).toBe(false); // already closing
    expect(life.deliver(m(1))).toBe(true); // reads go on while flushing
    expect(life.end()).toBe(true);
    expect(life.end(new Error("late"))).toBe(false);
    expect(life.deliver(m(2))).toBe(false);
    expect(events).toEqual(["m1"]); // the report is asynchronous
    await turn();
    expect(events).toEqual(["m1", "closed:clean"]);
  });

  it("Open → ReadFailed reports at once, keeps sending; the later end is not reported again", async () => {
    const { life, sink, events } = harness();
    life.start(sink);
    expect(life.failRead(new Error("bad frame"))).toBe(true);
    expect(life.state).toBe(LinkState.ReadFailed);
    expect(life.canSend).toBe(true); // the engine's Abort still goes out
    expect(life.deliver(m(1))).toBe(false);
    expect(life.failRead(new Error("again"))).toBe(false);
    expect(life.beginClose()).toBe(true);
    expect(life.end(new Error("stream closed"))).toBe(true);
    await turn();
    expect(events).toEqual(["closed:bad frame"]);
    expect(life.error?.message).toBe("bad frame");
  });

  it("an end before start is reported by start, after the messages that came first", async () => {
    const { life, sink, events } = harness();
    life.deliver(m(1));
    life.noteError(new Error("first"));
    life.noteError(new Error("second")); // the first reason noted wins
    life.end(new Error("third"));
    life.start(sink);
    expect(events).toEqual(["m1"]);
    await turn();
    expect(events).toEqual(["m1", "closed:first"]);
  });

  it("hold/unhold: messages wait while held, flow out in order, stop when held again", () => {
    const { life, sink, events } = harness();
    life.start(sink);
    life.hold();
    expect(life.held).toBe(true);
    life.deliver(m(1));
    life.deliver(m(2));
    expect(events).toEqual([]);
    life.unhold();
    expect(events).toEqual(["m1", "m2"]);
    // A sink that pauses us again while the queue drains: the rest waits.
    const h = harness();
    h.life.start({ message: (x) => void (h.events.push(`m${x[0]![0]}`), h.life.hold()), closed: () => {} });
    h.life.hold();
    h.life.deliver(m(1));
    h.life.deliver(m(2));
    h.life.unhold();
    expect(h.events).toEqual(["m1"]);
    h.life.unhold();
    expect(h.events).toEqual(["m1", "m2"]);
  });

  it("held messages of a link that ended are dropped; a throwing sink goes to the host", () => {
    const { life, sink, events, thrown } = harness();
    life.start(sink);
    life.hold();
    life.deliver(m(1));
    life.end();
    life.unhold();
    expect(events).toEqual([]);
    const h = harness();
    h.life.start(h.sink);
    expect(h.life.deliver(m(99))).toBe(false);
    expect(h.thrown.map((e) => e.message)).toEqual(["sink bug"]);
    expect(thrown).toEqual([]);
  });
});

describe("WriteFlow", () => {
  it("pauses at the high mark, resumes at the low mark, returns a LimitError past the cap", () => {
    const calls: string[] = [];
    const flow = new WriteFlow(resolveWriteFlow({ pauseReadingAt: 100, resumeReadingAt: 10, maxQueuedBytes: 1000 }), {
      pauseReading: () => void calls.push("pause"),
      resumeReading: () => void calls.push("resume"),
      queuedBytesNow: () => 0,
      flowStalled: () => void calls.push("stalled"),
    });
    expect(flow.grew(50)).toBeUndefined();
    expect(flow.grew(100)).toBeUndefined();
    expect(flow.grew(500)).toBeUndefined(); // already paused
    flow.shrank(11);
    flow.shrank(10);
    expect(calls).toEqual(["pause", "resume"]);
    const err = flow.grew(1001);
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxQueuedBytes = 1000/);
    expect(flow.stats()).toEqual({ queuedBytes: 1001, peakQueuedBytes: 1001, readPaused: false, pauses: 1 });
  });

  it("ends a connection paused past pausedTimeoutMs whose queue did not go down; progress restarts the clock", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate"] });
    // The check runs in a setImmediate after the timer (after the turn's I/O): one more ms runs it.
    const tick = (ms: number): void => {
      vi.advanceTimersByTime(ms);
      vi.advanceTimersByTime(1);
    };
    try {
      const calls: string[] = [];
      const stalled: LimitError[] = [];
      let queued = 0;
      const flow = new WriteFlow(resolveWriteFlow({ pauseReadingAt: 100, resumeReadingAt: 10, maxQueuedBytes: 1000, pausedTimeoutMs: 50 }), {
        pauseReading: () => void calls.push("pause"),
        resumeReading: () => void calls.push("resume"),
        queuedBytesNow: () => queued,
        flowStalled: (e) => void stalled.push(e),
      });
      // A slow reader: each check sees fewer bytes queued, so it is never ended; then it catches up.
      queued = 500;
      flow.grew(queued);
      for (let i = 0; i < 5; i++) {
        queued -= 50;
        tick(50);
      }
      expect(stalled).toEqual([]);
      flow.shrank(10);
      expect(calls).toEqual(["pause", "resume"]);
      tick(500); // resumed: no check left
      expect(stalled).toEqual([]);
      // A peer that takes nothing: ended once, with the reason.
      queued = 200;
      flow.grew(queued);
      vi.advanceTimersByTime(49);
      expect(stalled).toEqual([]);
      vi.advanceTimersByTime(1); // the timer fires; its check waits for this turn's I/O
      expect(stalled).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(stalled).toHaveLength(1);
      expect(stalled[0]).toBeInstanceOf(LimitError);
      expect(stalled[0]!.message).toMatch(/paused for 50 ms .*pausedTimeoutMs = 50/);
      tick(500);
      expect(stalled).toHaveLength(1);
      expect(flow.readPaused).toBe(false);
      // Infinity turns the check off.
      const off = new WriteFlow(resolveWriteFlow({ pauseReadingAt: 100, resumeReadingAt: 10, pausedTimeoutMs: Infinity }), {
        pauseReading: () => {},
        resumeReading: () => {},
        queuedBytesNow: () => 200,
        flowStalled: (e) => void stalled.push(e),
      });
      off.grew(200);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("checks its limits", () => {
    expect(resolveWriteFlow()).toEqual(DEFAULT_WRITE_FLOW);
    expect(resolveWriteFlow({ maxQueuedBytes: undefined })).toEqual(DEFAULT_WRITE_FLOW);
    expect(() => resolveWriteFlow({ pauseReadingAt: 0 })).toThrow(RangeError);
    expect(() => resolveWriteFlow({ pauseReadingAt: 1.5 })).toThrow(RangeError);
    expect(() => resolveWriteFlow({ resumeReadingAt: 2048, pauseReadingAt: 1024 })).toThrow(/resumeReadingAt <= pauseReadingAt/);
    expect(resolveWriteFlow({ maxQueuedBytes: Infinity }).maxQueuedBytes).toBe(Infinity);
    expect(() => resolveWriteFlow({ pausedTimeoutMs: -1 })).toThrow(/pausedTimeoutMs/);
  });
});
