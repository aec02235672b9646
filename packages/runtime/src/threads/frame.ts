/**
 * Task frames: which ThreadContext the code running right now belongs to (upstream's
 * `thread_local ThreadContext`). A server Thread task runs inside a frame; proxy calls it makes
 * find it with {@link currentFrame} (also after an `await`), so they use that Thread's context.
 *
 * Owns: the module's frame tracking (`syncFrame`, the AsyncLocalStorage, the live-frame count).
 * Module state is per JS thread in Node, as `thread_local` is per OS thread. Threading: the loop
 * thread (a worker's runtime has its own copy of this module).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { isThenable } from "../util.js";
import type { TaskControl } from "./executor.js";
import type { ThreadContext } from "./thread-context.js";

/** What runs "on" a logical thread: found with {@link currentFrame} from inside a task. */
export interface TaskFrame {
  readonly context: ThreadContext;
  /** The executor's control for this task (absent for frames entered with runInFrame alone). */
  readonly task: TaskControl | undefined;
  /** Outgoing IPC calls this task is waiting for (maintained by the proxy layer). */
  waits: number;
}

/*
 * Finding the current frame. Proxy calls made by a task must find it even after an `await`, which
 * only AsyncLocalStorage can do; but an enabled AsyncLocalStorage turns on promise hooks for the
 * whole process (every promise costs more). So:
 *  - `syncFrame` is the frame whose synchronous code is running (set around each task's start):
 *    calls made before a task's first await (the common case) need no lookup at all;
 *  - `frames` (AsyncLocalStorage) carries the frame across awaits. It is enabled while frames are in
 *    use and disabled once none has been live for {@link IDLE_DISABLE_MS} (an unref'd timer checks),
 *    so a process (or a period) without thread-mapped tasks runs without promise hooks. Disabling
 *    it as soon as the last frame settles would turn Node's promise hooks on and off once per
 *    Context call (AsyncLocalStorage `_enable`/`disable` cost more than the hooks themselves while
 *    calls keep coming). While no frame is live, `currentFrame` ignores the storage (enabled or
 *    not), so the idle delay changes nothing a caller can see. Work a task leaves running after it
 *    settled (a promise it did not await) may not see its frame any more; such work runs as the
 *    loop thread's.
 */
const frames = new AsyncLocalStorage<TaskFrame>();
let syncFrame: TaskFrame | undefined;
let liveFrames = 0;
/** How long the storage stays enabled after the last live frame settled. */
const IDLE_DISABLE_MS = 1000;
/** Frames entered since the idle timer was armed (a timer that finds any re-arms itself). */
let enteredSinceCheck = 0;
let idleTimer: ReturnType<typeof setTimeout> | undefined;

/** The frame of the server Thread task we are running in, if any (survives awaits). */
export function currentFrame(): TaskFrame | undefined {
  if (syncFrame !== undefined) return syncFrame;
  return liveFrames > 0 ? frames.getStore() : undefined;
}

/** Runs `fn` as a task of `context` (its proxy calls use `context`'s threads). */
export function runInFrame<T>(context: ThreadContext, fn: () => T, task?: TaskControl): T {
  return enterFrame({ context, task, waits: 0 }, fn);
}

/** @internal Runs `fn` in `frame` (see the comment above); the frame stays live until `fn` settles. */
export function enterFrame<T>(frame: TaskFrame, fn: () => T): T {
  const r = openFrame(frame, fn);
  if (isThenable(r)) r.then(leaveFrame, leaveFrame);
  else leaveFrame();
  return r;
}

/**
 * @internal {@link enterFrame} without its ending: runs `fn` in `frame` and returns its result with
 * the frame still live; the caller calls {@link leaveFrame} once when the result has settled (at
 * once for a value), so a server task ends its frame in the same reaction as the rest of its
 * bookkeeping (proxy/server.ts: one promise reaction per async task, not three). If `fn` throws,
 * the frame has been left.
 */
export function openFrame<T>(frame: TaskFrame, fn: () => T): T {
  const prev = syncFrame;
  syncFrame = frame;
  liveFrames++;
  enteredSinceCheck++;
  try {
    return frames.run(frame, fn);
  } catch (e) {
    leaveFrame();
    throw e;
  } finally {
    syncFrame = prev;
  }
}

/** @internal Ends a frame entered with {@link openFrame}. */
export function leaveFrame(): void {
  if (--liveFrames === 0 && idleTimer === undefined) armIdleTimer();
}

function armIdleTimer(): void {
  enteredSinceCheck = 0;
  idleTimer = setTimeout(onIdleTimer, IDLE_DISABLE_MS);
  idleTimer.unref();
}

function onIdleTimer(): void {
  idleTimer = undefined;
  if (liveFrames > 0) return; // the last frame to leave arms it again
  if (enteredSinceCheck > 0) armIdleTimer();
  else frames.disable();
}

/** @internal Whether the frame storage (and so Node's promise hooks) is enabled now (tests). */
export function frameStorageEnabled(): boolean {
  return (frames as unknown as { enabled: boolean }).enabled;
}
