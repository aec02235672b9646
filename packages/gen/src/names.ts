/**
 * Identifier and comment helpers shared by the emitters.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */

const RESERVED = new Set([
  "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else",
  "enum", "export", "extends", "false", "finally", "for", "function", "if", "import", "in", "instanceof",
  "new", "null", "return", "super", "switch", "this", "throw", "true", "try", "typeof", "var", "void",
  "while", "with", "yield", "let", "static", "implements", "interface", "package", "private", "protected",
  "public", "await", "arguments", "eval", "undefined", "NaN", "Infinity",
]);

/** A safe local variable / parameter name for `name`. */
export function localName(name: string): string {
  return RESERVED.has(name) ? `${name}_` : name;
}

/** Names a capnp-ts `Pointer` instance already uses; accessors with these names get a `_` suffix. */
const POINTER_MEMBERS = new Set(["segment", "byteOffset", "_capnp", "toString", "constructor", "which"]);

export function accessorName(name: string): string {
  return POINTER_MEMBERS.has(name) ? `${name}_` : name;
}

/** `set_int` → `setInt`, `map_string_int` → `mapStringInt`; names without `_` are kept. */
export function camelCase(name: string): string {
  return name.replace(/_+([a-zA-Z0-9])/g, (_m, c: string) => c.toUpperCase());
}

export function capitalize(name: string): string {
  return name.length === 0 ? name : name[0]!.toUpperCase() + name.slice(1);
}

/** Formats a schema doc comment (or several lines) as a JSDoc block at `indent`. */
export function jsdoc(text: string | undefined, indent = ""): string {
  if (text === undefined || text.trim() === "") return "";
  const lines = text.replace(/\*\//g, "*\\/").split("\n");
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop();
  if (lines.length === 1) return `${indent}/** ${lines[0]!.trim()} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} *${l.trim() === "" ? "" : " " + l.replace(/\s+$/, "")}`).join("\n")}\n${indent} */\n`;
}

/** `0x…n` bigint literal. */
export function hexBigint(id: bigint): string {
  return `0x${id.toString(16)}n`;
}

/** A JS string literal. */
export function str(s: string): string {
  return JSON.stringify(s);
}
