# Imported by edge.capnp (relative import).
@0xd3a4b5c6d7e8f902;

const importedConst :Int32 = 1234;

struct Shared {
  x @0 :Float64 = 2.5;
}

interface Remote {
  ping @0 () -> ();
}
