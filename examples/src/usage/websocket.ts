/**
 * docs/usage.md, "WebSocket": listenWebSocketConnections / connectWebSocket.
 */
import type { EventLoop } from "@multiprocess-ts/runtime";
import { connectWebSocket, listenWebSocketConnections, WebSocketRejectedError } from "@multiprocess-ts/node";
import { InitInterfaceClient, InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

export async function webSocketServer(loop: EventLoop): Promise<() => Promise<void>> {
  const wsListener = await listenWebSocketConnections(loop, new Init(), InitInterfaceServer, {
    port: 8787, // default 0 = any free port, see wsListener.port
    token: process.env["MP_TOKEN"], // Authorization: Bearer <token> or ?token=<token>
    allowedOrigins: ["https://app.example"], // checked against the Origin header
  });
  console.log(wsListener.url); // ws://127.0.0.1:8787/
  return () => wsListener.close(); // closes open connections too (close code 1001)
}

export async function webSocketClient(loop: EventLoop): Promise<void> {
  try {
    const init = await connectWebSocket(loop, "ws://127.0.0.1:8787/", InitInterfaceClient, {
      token: process.env["MP_TOKEN"],
      origin: "https://app.example",
    });
    const printer = await init.makePrinter();
    await printer.print("over a WebSocket\n");
    await printer.close();
    await init.close();
  } catch (e) {
    if (e instanceof WebSocketRejectedError) console.error("refused with HTTP", e.status);
    else throw e;
  }
}
