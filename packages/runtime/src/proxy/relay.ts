/**
 * Relay servers: a proxy client of one Connection passed into (or returned by) a call on another
 * Connection is served there by a new server whose impl is a proxy client (upstream: a
 * `ProxyServer<I>` wrapping a `ProxyClient<I>`, type-interface.h); see docs/design.md, "Relay
 * server".
 *
 * Owns: the relay's own proxy client (handed to the new server, which disposes it).
 * Threading: loop thread only.
 */
import type { Connection } from "../connection.js";
import type { ProxyClientBase } from "./client.js";
import { RELAY } from "./marks.js";
import type { ProxyClientCtor, ProxyServerCtor } from "./seam.js";
import type { ProxyServerBase } from "./server.js";

/**
 * A server on `connection` relaying every call to `client`, a proxy client of ANOTHER Connection
 * (upstream: `ProxyServer<I>` whose implementation is a `ProxyClient<I>`, type-interface.h). The
 * middle process then makes each call itself: the incoming call runs on a Thread of `connection`
 * (selected from its own Context), and the outgoing one gets a Context filled for the client's
 * Connection. Passing the raw capability instead would make the engine forward the call, with a
 * Context whose Thread capabilities belong to the wrong Connection ("invalid thread handle").
 *
 * Ownership. The relay's impl is a proxy client the relay owns:
 *  - params (`transfer` false): the caller only lends `client` (it keeps using and closing it, as
 *    after a same-Connection export, which hands out a new reference). The relay's impl is a NEW
 *    client of the same class over a new reference to the same capability; the caller's client is
 *    never closed by the relay, and the caller may close it at any time without affecting it;
 *  - results (`transfer` true): the server implementation returned `client`, handing it to the
 *    runtime (as for any returned object, which the new server owns); the relay owns that client
 *    itself (shared with other relays of the same object by the owner count, like any impl).
 * The relay disposes its client like the pass-through reference it stands for:
 *  - the peer calls `destroy` on the relay → the client is closed with a remote `destroy` before
 *    the relay replies (upstream's synchronous destroy chain);
 *  - the peer only releases the relay (or its Connection ends) → the client releases its
 *    reference without `destroy`: the object lives on while others reference it.
 */
export function relayServer(
  client: ProxyClientBase,
  ServerCtor: ProxyServerCtor,
  connection: Connection,
  transfer: boolean,
): ProxyServerBase<unknown> {
  let own: ProxyClientBase;
  if (transfer) {
    client.$checkOpen(); // the usual errors for a closed / disconnected client
    own = client;
  } else {
    const cap = client.$dupCap(); // throws the usual errors for a closed / disconnected client
    try {
      own = new (client.constructor as ProxyClientCtor<ProxyClientBase>)(cap, client.$connection);
    } catch (e) {
      cap.close();
      throw e;
    }
  }
  const server = new ServerCtor(own, connection);
  server[RELAY]();
  return server;
}
