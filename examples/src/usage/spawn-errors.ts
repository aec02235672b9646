/**
 * docs/usage.md, "Child processes": a startup timeout, and what a failed startup reports.
 */
import { EventLoop } from "@multiprocess-ts/runtime";
import { SpawnError, spawnProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

export async function spawnWithTimeout(childScript: string): Promise<void> {
  const loop = new EventLoop("parent");
  try {
    const proc = await spawnProcess(process.execPath, (fd) => [childScript, String(fd)], {
      loop,
      InitClient: InitInterfaceClient,
      startupTimeout: 5_000, // ms until the child must serve; then it is killed
    });
    await proc.init.close();
  } catch (e) {
    if (!(e instanceof SpawnError)) throw e;
    // code: MP_ERR_SPAWN_TIMEOUT or MP_ERR_SPAWN_FAILED; how the child ended; its last stderr.
    console.error(e.code, e.exitCode, e.signal, e.stderr);
  }
  await loop.done;
}
