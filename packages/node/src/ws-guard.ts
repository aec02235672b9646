/**
 * Hostile-peer guards of the WebSocket listener (docs/rpc.md "Listener limits"), the WebSocket
 * counterpart of what `listen.ts` does for socket listeners:
 * - the HTTP upgrade is bounded: a TCP connection that has not completed its upgrade within
 *   `upgradeTimeoutMs` of being accepted is closed (slow or missing request headers);
 * - `maxConnections`: upgrades beyond it are parked (FIFO, not read, at most `maxPending`) until
 *   a slot frees, as `listenSockets` parks sockets; one parked longer than `parkTimeoutMs` is
 *   closed (its socket destroyed), so a full listener cannot hold waiting clients forever;
 * - a served connection's client frames are followed by a {@link WsFrameTracker} (frame
 *   boundaries only, no copy): a message left incomplete for `frameTimeoutMs`, or no message
 *   within `firstMessageTimeoutMs`, closes it (close code 1008, then the socket), so idle or
 *   trickling peers cannot hold slots; partially received messages of all its connections share
 *   one {@link FrameBudget}, and the connection whose message would pass it is closed.
 *
 * Threading: the loop thread that runs the listener.
 */

import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { FrameBudget, LimitError } from "@multiprocess-ts/capnp";
import { sweepPeriodMs } from "./sweep.js";

/** The limits of a {@link WsGuard}, resolved (0 disables a timeout; 0 connections = no limit). */
export interface WsGuardLimits {
  maxConnections: number;
  maxPending: number;
  upgradeTimeoutMs: number;
  parkTimeoutMs: number;
  frameTimeoutMs: number;
  firstMessageTimeoutMs: number;
  budget: FrameBudget;
}

/** Events of a WebSocket listener (synchronous, on the loop thread). */
export interface WsGuardEvents {
  /** An upgrade request was parked while at `maxConnections`. */
  park: [];
  /** A parked upgrade, or a connection over `maxPending`, was closed unserved. */
  drop: [];
  /**
   * A connection, upgrade or parked upgrade was closed by a timeout or the frame budget (`reason`
   * says which; `error` is the same as a {@link LimitError}, code `MP_ERR_LIMIT`).
   */
  limit: [reason: string, error: LimitError];
}

/**
 * Follows the frames a WebSocket client sends (RFC 6455 §5.2) without keeping their bytes: counts
 * completed data messages, knows since when a message (or a control frame) has been incomplete,
 * and charges the bytes of the message in progress to a shared {@link FrameBudget}.
 */
export class WsFrameTracker {
  /** Data messages completed so far. */
  messages = 0;
  /** `now()` when the incomplete message started; -1 between messages. */
  partialSince = -1;
  /** Bytes charged to the budget. */
  held = 0;
  private readonly header = new Uint8Array(14);
  private headerFill = 0;
  private headerNeed = 2;
  private payloadLeft = -1; // -1 while reading a frame header
  private dataFrame = false;
  private finalFrame = false;
  private inMessage = false; // a data frame without FIN was seen: the message goes on
  private arrived = 0; // bytes since the last message boundary

  constructor(
    private readonly budget: FrameBudget | null,
    private readonly now: () => number,
  ) {}

  /** Follow one chunk. False when the budget refused the partial message (close the connection). */
  push(chunk: Uint8Array): boolean {
    let off = 0;
    const len = chunk.byteLength;
    while (off < len) {
      if (this.arrived === 0) this.partialSince = this.now();
      if (this.payloadLeft < 0) {
        const n = Math.min(this.headerNeed - this.headerFill, len - off);
        this.header.set(chunk.subarray(off, off + n), this.headerFill);
        this.headerFill += n;
        this.arrived += n;
        off += n;
        if (this.headerFill < this.headerNeed || !this.headerDone()) continue;
      } else {
        const n = Math.min(this.payloadLeft, len - off);
        this.payloadLeft -= n;
        this.arrived += n;
        off += n;
      }
      if (this.payloadLeft === 0) this.frameDone();
    }
    if (this.arrived === 0 || this.budget === null || this.arrived <= this.held) return true;
    if (!this.budget.tryTake(this.arrived - this.held)) return false;
    this.held = this.arrived;
    return true;
  }

  /** Give back what is charged (the connection closed). */
  release(): void {
    if (this.held > 0) this.budget?.give(this.held);
    this.held = 0;
  }

  /** The header bytes so far are a whole header: start its payload (true), or more are needed. */
  private headerDone(): boolean {
    const h = this.header;
    const len7 = h[1]! & 0x7f;
    const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1]! & 0x80 ? 4 : 0);
    if (this.headerFill < need) {
      this.headerNeed = need;
      return false;
    }
    const dv = new DataView(h.buffer);
    this.payloadLeft = len7 === 126 ? dv.getUint16(2) : len7 === 127 ? dv.getUint32(2) * 2 ** 32 + dv.getUint32(6) : len7;
    this.dataFrame = (h[0]! & 0x0f) < 8;
    this.finalFrame = (h[0]! & 0x80) !== 0;
    this.headerFill = 0;
    this.headerNeed = 2;
    return true;
  }

  private frameDone(): void {
    this.payloadLeft = -1;
    if (this.dataFrame) {
      this.inMessage = !this.finalFrame;
      if (this.finalFrame) this.messages++;
    }
    if (this.inMessage) return;
    // A message boundary (a whole message, or a control frame between messages).
    this.release();
    this.arrived = 0;
    this.partialSince = -1;
  }
}

/** A served WebSocket connection as the guard follows it. */
interface Served {
  socket: Duplex;
  tracker: WsFrameTracker;
  since: number;
  /** Reading paused by flow control: the partial-message clock does not run. */
  paused: () => boolean;
  /** Close with `err` (the transport ends with it). */
  cut: (err: LimitError) => void;
}

/** Upgrade timeouts, slots and parking, and frame tracking of one WebSocket listener. */
export class WsGuard extends EventEmitter<WsGuardEvents> {
  /** Accepted TCP connections that have not completed their upgrade: since when. */
  private readonly upgrading = new Map<Duplex, number>();
  private readonly parked: (() => void)[] = [];
  /** Parked sockets: since when, and their entry in `parked`. */
  private readonly parkedSockets = new Map<Duplex, { since: number; entry: () => void }>();
  private readonly served = new Map<Duplex, Served>();
  private active = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(readonly limits: WsGuardLimits) {
    super();
  }

  /** Upgrades waiting for a slot. */
  get pending(): number {
    return this.parked.length;
  }

  /** A TCP connection was accepted by the HTTP server: its upgrade is timed from now. */
  accepted(socket: Duplex): void {
    this.upgrading.set(socket, Date.now());
    socket.once("close", () => this.upgrading.delete(socket));
    this.watch();
  }

  /**
   * An authorised upgrade request: `upgrade()` runs now if a slot is free, else when one frees
   * (the socket is paused meanwhile, and closed after `parkTimeoutMs`). The slot is held until
   * the socket closes.
   */
  admit(socket: Duplex, upgrade: () => void): void {
    const { maxConnections: max, maxPending } = this.limits;
    if (max === 0 || this.active < max) {
      this.take(socket);
      upgrade();
      return;
    }
    if (this.parked.length >= maxPending) {
      socket.destroy();
      this.emit("drop");
      return;
    }
    this.upgrading.delete(socket);
    socket.pause();
    const entry = (): void => {
      this.parkedSockets.delete(socket);
      if (socket.destroyed) return; // gave up while parked
      this.upgrading.set(socket, Date.now());
      this.watch();
      this.take(socket);
      socket.resume();
      upgrade();
    };
    this.parked.push(entry);
    this.parkedSockets.set(socket, { since: Date.now(), entry });
    socket.once("close", () => {
      if (!this.parkedSockets.delete(socket)) return;
      this.parked.splice(this.parked.indexOf(entry), 1);
    });
    this.watch();
    this.emit("park");
  }

  /** The upgrade of `socket` completed: follow its client frames until it closes. */
  serve(socket: Duplex, paused: () => boolean, cut: (err: LimitError) => void): void {
    this.upgrading.delete(socket);
    const served: Served = { socket, tracker: new WsFrameTracker(this.limits.budget, Date.now), since: Date.now(), paused, cut };
    this.served.set(socket, served);
    this.watch();
    const onData = (chunk: Buffer): void => {
      if (!served.tracker.push(chunk)) {
        this.cut(served, `partial messages of all connections would pass the frame budget of ${this.limits.budget.limit} bytes`);
      }
    };
    socket.on("data", onData);
    socket.once("close", () => {
      socket.off("data", onData);
      served.tracker.release();
      this.served.delete(socket);
    });
  }

  /** The listener is closing: close every parked socket and stop timing (served ones are closed by the listener). */
  close(): void {
    this.closed = true;
    for (const s of [...this.parkedSockets.keys()]) {
      s.destroy();
      this.emit("drop");
    }
    this.parked.length = 0;
    this.parkedSockets.clear();
    this.stopWatching();
  }

  private take(socket: Duplex): void {
    this.active++;
    socket.once("close", () => {
      this.active--;
      while (!this.closed && this.parked.length > 0 && (this.limits.maxConnections === 0 || this.active < this.limits.maxConnections)) {
        this.parked.shift()!();
      }
    });
  }

  private watch(): void {
    if (this.sweeper !== undefined || this.closed) return;
    const { upgradeTimeoutMs: u, parkTimeoutMs: p, frameTimeoutMs: f, firstMessageTimeoutMs: m } = this.limits;
    const period = sweepPeriodMs([u, p, f, m]);
    if (period === undefined) return;
    this.sweeper = setInterval(() => this.sweep(), period);
    this.sweeper.unref();
  }

  private stopWatching(): void {
    if (this.sweeper === undefined) return;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /**
   * Close upgrades that took too long, upgrades parked too long, and served connections whose
   * message stalled or never came.
   */
  private sweep(): void {
    const now = Date.now();
    const { upgradeTimeoutMs, parkTimeoutMs, frameTimeoutMs, firstMessageTimeoutMs } = this.limits;
    for (const [socket, since] of [...this.upgrading]) {
      if (upgradeTimeoutMs > 0 && now - since > upgradeTimeoutMs) {
        this.upgrading.delete(socket);
        this.limitHit(`the HTTP upgrade did not complete within upgradeTimeoutMs = ${upgradeTimeoutMs}`);
        socket.destroy();
      }
    }
    if (parkTimeoutMs > 0) this.sweepParked(now, parkTimeoutMs);
    for (const s of [...this.served.values()]) {
      const t = s.tracker;
      if (s.paused()) {
        if (t.partialSince >= 0) t.partialSince = now; // we are not reading: not the peer's stall
      } else if (frameTimeoutMs > 0 && t.partialSince >= 0 && now - t.partialSince > frameTimeoutMs) {
        this.cut(s, `a message stayed incomplete for more than frameTimeoutMs = ${frameTimeoutMs}`);
      } else if (firstMessageTimeoutMs > 0 && t.messages === 0 && now - s.since > firstMessageTimeoutMs) {
        this.cut(s, `no message completed within firstMessageTimeoutMs = ${firstMessageTimeoutMs}`);
      }
    }
    if (this.upgrading.size === 0 && this.served.size === 0 && this.parkedSockets.size === 0) this.stopWatching();
  }

  /** Parked upgrades waiting longer than `limit` ms are closed unserved (`limit`, then `drop`). */
  private sweepParked(now: number, limit: number): void {
    for (const [socket, p] of [...this.parkedSockets]) {
      if (now - p.since <= limit) continue;
      this.parkedSockets.delete(socket);
      this.parked.splice(this.parked.indexOf(p.entry), 1);
      this.limitHit(`the upgrade stayed parked at maxConnections = ${this.limits.maxConnections} for more than parkTimeoutMs = ${limit}`);
      socket.destroy();
      this.emit("drop");
    }
  }

  private limitHit(reason: string): LimitError {
    const err = new LimitError(`WebSocket connection closed: ${reason}`);
    this.emit("limit", reason, err);
    return err;
  }

  private cut(s: Served, reason: string): void {
    if (this.served.get(s.socket) !== s) return; // already cut
    s.tracker.release();
    this.served.delete(s.socket);
    s.cut(this.limitHit(reason));
  }
}
