/**
 * docs/usage.md, "Any Node stream": connectStream / serveStream (upstream ConnectStream /
 * ServeStream) over any connected Duplex pair, e.g. the two ends of a socket.
 */
import type { Duplex } from "node:stream";
import type { EventLoop } from "@multiprocess-ts/runtime";
import { connectStream, serveStream } from "@multiprocess-ts/node";
import { InitInterfaceClient, InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

export async function streamExample(serverLoop: EventLoop, clientLoop: EventLoop, socketA: Duplex, socketB: Duplex): Promise<void> {
  const connection = serveStream(serverLoop, socketA, new Init(), InitInterfaceServer); // a Connection
  const init = await connectStream(clientLoop, socketB, InitInterfaceClient); // an InitInterfaceClient

  const printer = await init.makePrinter();
  await printer.print("over a stream\n");
  await printer.close();
  await init.close(); // closes the client's connection
  await connection.disconnected; // the server side sees the peer go
}
