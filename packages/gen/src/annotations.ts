/**
 * The libmultiprocess annotations from `mp/proxy.capnp` and how mpgen reads them.
 * IDs are fixed by the file ID `0xcc316e3f71a040fb` (see libmultiprocess src/mp/gen.cpp).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import type { AnnotationInfo, NodeInfo } from "./schema.js";

export const PROXY_FILE_ID = 0xcc316e3f71a040fbn;
export const ANN_INCLUDE = 0xb899f3c154fdb458n;
export const ANN_INCLUDE_TYPES = 0xbcec15648e8a0cf1n;
export const ANN_WRAP = 0xe6f46079b7b1405en;
export const ANN_COUNT = 0xd02682b319f69b38n;
export const ANN_EXCEPTION = 0x996a183200992f88n;
export const ANN_NAME = 0xb594888f63f4dbb9n;
export const ANN_SKIP = 0x824c08b82695d8ddn;
/** `mp/proxy.capnp` `Context`, `ThreadMap`, `Thread`. */
export const CONTEXT_ID = 0x9c44e6645d0b22c6n;
export const THREAD_MAP_ID = 0xee5e37179ad9dc9dn;
export const THREAD_ID = 0x81c1e2600d0b56c5n;

const KNOWN = new Set([ANN_INCLUDE, ANN_INCLUDE_TYPES, ANN_WRAP, ANN_COUNT, ANN_EXCEPTION, ANN_NAME, ANN_SKIP]);

/** Thrown for schemas mpgen cannot map to TypeScript. */
export class MpgenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MpgenError";
  }
}

export function findAnnotation(anns: readonly AnnotationInfo[], id: bigint): AnnotationInfo | undefined {
  return anns.find((a) => a.id === id);
}

export function textAnnotation(anns: readonly AnnotationInfo[], id: bigint): string | undefined {
  const a = findAnnotation(anns, id);
  return a !== undefined && a.value.kind === "text" ? a.value.value : undefined;
}

export function countAnnotation(anns: readonly AnnotationInfo[]): number | undefined {
  if (findAnnotation(anns, ANN_SKIP) !== undefined) return 0;
  const a = findAnnotation(anns, ANN_COUNT);
  if (a === undefined) return undefined;
  return typeof a.value.value === "number" ? a.value.value : undefined;
}

/**
 * Rejects annotations declared in mp/proxy.capnp that this mpgen does not know (a newer upstream
 * file), so they are not silently ignored.
 */
export function checkAnnotations(anns: readonly AnnotationInfo[], nodes: Map<bigint, NodeInfo>, where: string): void {
  for (const a of anns) {
    if (KNOWN.has(a.id)) continue;
    const n = nodes.get(a.id);
    if (n !== undefined && n.scopeId === PROXY_FILE_ID) {
      throw new MpgenError(`mpgen: cannot map annotation $Proxy.${n.shortName} on ${where}: unknown to this version of mpgen`);
    }
  }
}

/** `ProxyCallback<std::function<int(int)>>` → true: the interface maps to a TS function type. */
export function isFunctionWrap(node: NodeInfo): boolean {
  const w = textAnnotation(node.annotations, ANN_WRAP);
  return w !== undefined && /^\s*ProxyCallback\s*<\s*std::function\s*</.test(w);
}
