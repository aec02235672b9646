// Reads a Call message's header fields into the connection's Envelope (the engine's incoming-call
// fast paths). Runs on whichever thread owns the connection (the loop thread or a worker's).
import type { Envelope } from "./fastpath.js";

/**
 * A Call's header into `env`: its question id, method id, sendResultsTo tag and interface id (the
 * last interface's BigInt again when its bits match: no BigInt per call, and the server's method
 * table compares it by identity first: runtime proxy/server.ts), and its MessageTarget's tag and
 * importedCap. `call` and `target` are the byte offsets of the Call and MessageTarget data
 * sections in `dv`. Shared by fastpath.ts decodeEnvelope and the hot-shape check (rpc/hot-shape.ts).
 */
export function readCallHeader(dv: DataView, env: Envelope, call: number, target: number): void {
  env.id = dv.getUint32(call, true);
  env.methodId = dv.getUint16(call + 4, true);
  env.sendResultsTo = dv.getUint16(call + 6, true);
  const iidLo = dv.getUint32(call + 8, true);
  const iidHi = dv.getUint32(call + 12, true);
  // A constant chosen by data, one call site: a warm server's calls keep the interface, a new
  // connection's first Call (a new Envelope) does not (rpc/dispatch.ts `hotMessage`).
  const iid = iidLo === env.iidLo && iidHi === env.iidHi ? sameInterface : newInterface;
  iid(dv, env, call, iidLo, iidHi);
  env.targetWhich = dv.getUint16(target + 4, true);
  env.importedCap = dv.getUint32(target, true);
}

type InterfaceReader = (dv: DataView, env: Envelope, call: number, iidLo: number, iidHi: number) => void;
const sameInterface: InterfaceReader = () => {};
const newInterface: InterfaceReader = (dv, env, call, iidLo, iidHi) => {
  env.iidLo = iidLo;
  env.iidHi = iidHi;
  env.interfaceId = dv.getBigUint64(call + 8, true);
};
