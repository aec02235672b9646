// The stream transport under test (contracts.md §1).
export { streamTransport } from "@multiprocess-ts/capnp";
