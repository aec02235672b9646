/**
 * `@multiprocess-ts/runtime/gen/capnp`: the capnp-ts API that generated code (mpgen output) uses
 * for its struct classes (`import * as $ from "@multiprocess-ts/runtime/gen/capnp"`), re-exported so
 * an application depends on the runtime only and always gets the capnp-ts version the runtime was
 * built with. `Struct` is capnp-ts's with faster primitive field accessors (struct.ts). Any
 * thread. Not for hand-written code (docs/mpgen.md, "Generated imports").
 * @module
 */
export * from "capnp-ts";
/** Data field and List(Data) element setters of generated writers: adopt a large caller buffer as a segment (no copy). */
export { writeData, writeDataElement } from "@multiprocess-ts/capnp";
export { Struct } from "./struct.js";
