/**
 * The module-level functions the stream transport (stream.ts) calls or chooses between on its hot
 * paths: its flush reactions, and the constants its sends and flushes pick by data at one call
 * site each instead of branching (docs/rpc.md "A new connection keeps the optimised code"). One
 * handler for every connection, not a closure per transport.
 *
 * Threading: the thread of the transport they are called with.
 */

/** What these functions call on a stream transport. */
export interface FlushHost {
  readonly settled: Promise<FlushHost>;
  uncork(): void;
  writeNow(): void;
  scheduleFlush(): void;
  scheduleLazyFlush(): void;
  lazyTick(): void;
}

/** Little-endian u32 at `o` (a frame's segment table in the batch). */
export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** The lazy flush's timer callback (stream.ts scheduleLazyFlush). */
export function LAZY_TICK(t: FlushHost): void {
  t.lazyTick();
}

/** The reaction of a transport's flush (its `settled`), and how it is queued, not, or done now. */
export const FLUSH = (t: FlushHost): void => t.uncork();
export const QUEUE_FLUSH = (t: FlushHost): void => void t.settled.then(FLUSH);
export const NO_FLUSH = (_t: FlushHost): void => {};
/** The solo window's message: written from its send (stream.ts endReadTurn). */
export const WRITE_NOW = (t: FlushHost): void => t.writeNow();

/** What sendMessage and flushBatch choose from (see there). */
export const scheduleNow = (t: FlushHost): void => t.scheduleFlush();
export const scheduleLazy = (t: FlushHost): void => t.scheduleLazyFlush();
export const sameChunk = (last: Uint8Array | null, _b: Buffer, _len: number): Uint8Array => last!;
export const newChunk = (_last: Uint8Array | null, b: Buffer, len: number): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, len);
export const noBatchYet = (_b: Buffer | null, _end: number): boolean => true;
export const batchHasRoom = (b: Buffer | null, end: number): boolean => end <= b!.byteLength;
