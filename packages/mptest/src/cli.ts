#!/usr/bin/env node
// The `mptest` bin. Exits explicitly: after a hang the stuck iteration still holds handles.
// Threading: runs on the mptest process's main thread.
import { runCli } from "./command.js";

const code = await runCli(process.argv.slice(2));
// Let stdout/stderr drain (pipes are asynchronous), then exit even if a hung iteration holds handles.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
