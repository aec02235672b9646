// The stream transport under test. contracts.md §1 puts `streamTransport` in
// @multiprocess-ts/capnp; until it is exported there, @multiprocess-ts/node's `duplexTransport`
// implements the same contract (its file says so).
// TODO(cleanup): `export { streamTransport } from "@multiprocess-ts/capnp";` once it lands.
export { duplexTransport as streamTransport } from "@multiprocess-ts/node";
