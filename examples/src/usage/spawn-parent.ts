/**
 * docs/usage.md, "Child processes", parent side: spawnProcess = upstream SpawnProcess +
 * ConnectStream<Init>. The child is spawn-child.ts.
 */
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { spawnProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

export async function spawnExample(): Promise<void> {
  const loop = new EventLoop("parent");
  const childScript = fileURLToPath(new URL("./spawn-child.js", import.meta.url));
  const proc = await spawnProcess(
    process.execPath,
    (fd) => [childScript, String(fd)], // runs here, in the parent, before the child starts
    { loop, InitClient: InitInterfaceClient, stdio: ["inherit", "inherit", "inherit"] },
  );
  const printer = await proc.init.makePrinter(); // a PrinterInterfaceClient
  await printer.print("hello from the parent\n"); // appears on the child's stdout
  await printer.close();
  await proc.init.close(); // disconnect: the child's loop ends...
  console.log(await proc.exited); // ...and it exits: { code: 0, signal: null }
  await loop.done;
}
