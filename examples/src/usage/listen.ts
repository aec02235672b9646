/**
 * docs/usage.md, "Unix sockets and TCP": listenConnections (upstream ListenConnections) and
 * connectSocket.
 */
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectSocket, listenConnections } from "@multiprocess-ts/node";
import { InitInterfaceClient, InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

export async function listenExample(socketPath: string): Promise<void> {
  const loop = new EventLoop("server");
  const clientLoop = new EventLoop("client");
  const impl = new Init(); // shared by all connections, stays owned by us

  const listener = await listenConnections(socketPath, loop, impl, InitInterfaceServer, {
    maxConnections: 4,
    onConnection: (c) => console.log("client connected", c.name),
  });
  listener.on("park", (id) => console.log(`connection ${id} waits for a slot`));
  const init = await connectSocket(clientLoop, socketPath, InitInterfaceClient);

  const tcp = await listenConnections(0, loop, impl, InitInterfaceServer); // 127.0.0.1, free port
  const port = "port" in tcp.address ? tcp.address.port : 0;
  const overTcp = await connectSocket(clientLoop, port, InitInterfaceClient);

  await init.close();
  await overTcp.close();
  await listener.close(); // stop accepting, wait for served connections to end
  await tcp.close({ destroy: true }); // or cut them
}
