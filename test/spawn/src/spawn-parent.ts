/**
 * Intermediate parent for test/spawn: spawns dist/spawn-child.js with spawnProcess (sharing this
 * process's stdout), makes one call through it, writes "parent ready <child pid>", then keeps the
 * connection open until it is killed. The test kills THIS process to check that the child notices
 * its parent is gone, ends its loop and exits on its own.
 */
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { spawnProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

const CHILD = fileURLToPath(new URL("./spawn-child.js", import.meta.url));
const loop = new EventLoop("spawn-parent");
const proc = await spawnProcess(process.execPath, (fd) => [CHILD, String(fd)], { loop, InitClient: InitInterfaceClient });
const printer = await proc.init.makePrinter();
await printer.print("from the intermediate parent");
process.stdout.write(`parent ready ${proc.pid}\n`);
// Stay connected (the socket keeps this process alive) until the test kills us.
