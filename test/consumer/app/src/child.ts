/**
 * The spawned child process: serves an Adder on the socketpair end whose fd is argv[2].
 */
import { serveSpawned } from "@multiprocess-ts/node";
import { AdderServer } from "./gen/calc.capnp.js";
import { AdderImpl } from "./impl.js";

await serveSpawned(process.argv[2], new AdderImpl("child"), AdderServer);
