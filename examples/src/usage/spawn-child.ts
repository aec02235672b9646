/**
 * docs/usage.md, "Child processes", child side: serveSpawned = upstream StartSpawned(argv[1]) +
 * ServeStream + loop(). Node's argv has the script at [1], so the fd number is argv[2].
 */
import { serveSpawned } from "@multiprocess-ts/node";
import { InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

// Resolves once the parent disconnected and the loop has no more work; the process then exits 0.
await serveSpawned(process.argv[2], new Init(), InitInterfaceServer);
