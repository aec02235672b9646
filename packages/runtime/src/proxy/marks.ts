/**
 * Private symbols the proxy modules share: the proxy-client brand (so the IO can recognise a
 * ProxyClientBase without importing its module, which imports the IO), and the server marks the
 * runtime sets (disowned Init impl, relay server). A leaf module: no imports.
 *
 * Owns: nothing (symbols). Threading: any thread.
 */

/** Set (true) on every ProxyClientBase: `isProxyClient` is `instanceof ProxyClientBase`. */
export const PROXY_CLIENT: unique symbol = Symbol("mp.proxyClient");
/** `server[DISOWN]()`: the application keeps ownership of the impl (serveTransport's Init). */
export const DISOWN: unique symbol = Symbol("mp.disown");
/** `server[RELAY]()`: the server is a relay; its impl is a proxy client it owns (relay.ts). */
export const RELAY: unique symbol = Symbol("mp.relay");

/** True for a ProxyClientBase (of any class; see {@link PROXY_CLIENT}). */
export function isProxyClient(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as { [PROXY_CLIENT]?: unknown })[PROXY_CLIENT] === true;
}
