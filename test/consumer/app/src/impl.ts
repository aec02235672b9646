/**
 * The consumer app's implementations of its own schema (schema/calc.capnp); they run on the
 * thread of the EventLoop that serves them (the child's, or the app's for the WebSocket server).
 */
import { ListenerClient, type Adder, type Counter, type Listener } from "./gen/calc.capnp.js";

class CounterImpl implements Counter {
  constructor(private n: bigint) {}
  next(): bigint {
    return this.n++;
  }
}

export class AdderImpl implements Adder {
  constructor(private readonly where: string) {}
  add(a: number, b: number): number {
    return a + b;
  }
  async addAndTell(a: number, b: number, listener: Listener | null): Promise<number> {
    const sum = a + b;
    await listener?.onResult(`${a} + ${b} = ${sum}, said the ${this.where}`);
    // A client received as a parameter belongs to the callee: close it when done.
    if (listener instanceof ListenerClient) await listener.close();
    return sum;
  }
  makeCounter(start: bigint): Counter {
    return new CounterImpl(start);
  }
  whoami(): string {
    return `${this.where} pid ${process.pid}`;
  }
}
