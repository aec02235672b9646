/**
 * Per-thread facts the worker glue needs. Module state is per thread in Node (each worker has its
 * own module graph), which is what upstream's `thread_local ThreadContext` gives C++: whether this
 * thread hosts a loop (and so must never block), and running promise jobs while blocked.
 *
 * Owns: this thread's loop-thread count. Threading: any thread (each sees its own state).
 */

let loopThreadCount = 0;

/** @internal A WorkerHost (or an EventLoop) lives on this thread. */
export function markLoopThread(): void {
  loopThreadCount++;
}

/** @internal */
export function unmarkLoopThread(): void {
  if (loopThreadCount > 0) loopThreadCount--;
}

/**
 * True when this thread owns a loop that workers attach to. Such a thread must never block:
 * workers would deadlock waiting for it (upstream asserts the same in `clientInvoke`).
 */
export function isLoopThread(): boolean {
  return loopThreadCount > 0;
}

/** Throws the "never block the loop thread" error when `isLoopThread()`. */
export function assertMayBlock(what: string): void {
  if (isLoopThread()) {
    throw new Error(
      `${what}: blocking call from the event loop thread. The loop thread never blocks ` +
        "(workers and the peer would wait on it forever); use the Promise-returning API there.",
    );
  }
}

type TickFn = () => void;

/**
 * Runs the promise jobs (and nextTick callbacks) queued on this thread, if we are not already
 * inside a promise job. Returns false when it cannot (V8 runs no nested microtask checkpoint).
 *
 * This uses `process._tickCallback`, an undocumented Node function that runs the nextTick queue
 * and a microtask checkpoint; it is the only way to finish a Promise-returning proxy call while
 * the thread is blocked in Atomics.wait. Timers and I/O stay paused.
 */
export function runPromiseJobs(): boolean {
  const tick = (process as unknown as { _tickCallback?: TickFn })._tickCallback;
  if (typeof tick !== "function") return false;
  let ran = false;
  void Promise.resolve().then(() => {
    ran = true;
  });
  tick();
  return ran;
}
