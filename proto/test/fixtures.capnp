# Test-only interfaces for the runtime and worker-thread tests (packages/runtime/test,
# test/races), next to upstream's foo.capnp: an Init with `construct` that hands out FooInterface
# objects, a FooInterface that can name the server thread a call runs on, a FooCallback that can
# also be a Connection's bootstrap and carry Proxy.Context calls, and a second Init handing out
# callbacks and functions (the relay tests' "printer" process). Generated into
# proto/src/test/fixtures.capnp.ts by `pnpm gen`. At the end, two versions of a struct with unions
# (schema evolution).

@0xa9bd54378a4ff219;

using Proxy = import "/mp/proxy.capnp";
using Foo = import "foo.capnp";

interface FooInit {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makeFoo @1 (context :Proxy.Context) -> (result :ThreadFoo);
}

# FooInterface plus threadName: the name of the server Thread a Context call runs on.
interface ThreadFoo extends(Foo.FooInterface) {
    threadName @0 (context :Proxy.Context) -> (result :Text);
}

# A FooCallback that is also a Connection's Init: initThreadMap lets a Connection whose bootstrap
# is a callback exchange ThreadMaps and so carry Proxy.Context calls.
interface ThreadedCallback extends(Foo.FooCallback) {
    initThreadMap @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
}

# The relay tests' far process: hands out a FooCallback (a Printer) and a FooFn.
interface PrinterInit {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    makePrinter @1 (context :Proxy.Context) -> (result :Foo.FooCallback);
    makeFn @2 (context :Proxy.Context) -> (result :Foo.FooFn);
}

# Schema evolution of unions (docs/mpgen.md, "Unions"): two versions of one struct and one
# interface. Version 2 adds a member to the unnamed union and one to the named union `mode`; the
# fields of version 1 keep their ordinals, so both versions lay them out the same. Tests read
# bytes written with version 2 through version 1's reader (a peer with a newer schema).
struct EvolvedV1 {
    name @0 :Text;
    union {
        count @1 :UInt32;
        label @2 :Text;
    }
    mode :union {
        fast @3 :Void;
        slow @4 :UInt16;
    }
}

struct EvolvedV2 {
    name @0 :Text;
    union {
        count @1 :UInt32;
        label @2 :Text;
        tags @5 :List(Text);
    }
    mode :union {
        fast @3 :Void;
        slow @4 :UInt16;
        careful @6 :Float64;
    }
}

# The same interface in both versions (a real newer peer keeps the interface id; tests serve
# version 2's methods under version 1's id).
interface EvolvingV1 {
    echo @0 (v :EvolvedV1) -> (v :EvolvedV1);
    latest @1 () -> (v :EvolvedV1);
}

interface EvolvingV2 {
    echo @0 (v :EvolvedV2) -> (v :EvolvedV2);
    latest @1 () -> (v :EvolvedV2);
}

# Every numeric parameter kind a flat params writer writes (mpgen: a params struct of data fields
# only gets a DataView writer, `$invokeFlat`), echoed back through the struct readers and writers
# (proto/test/flat-params.test.ts): the writer's offsets, widths and byte order against capnp's.
enum FlatKind {
    zero @0;
    one @1;
    last @2;
}

interface FlatEcho {
    echo @0 (i8 :Int8, u8 :UInt8, i16 :Int16, u16 :UInt16, i32 :Int32, u32 :UInt32, i64 :Int64,
             u64 :UInt64, f32 :Float32, f64 :Float64, k :FlatKind)
         -> (i8 :Int8, u8 :UInt8, i16 :Int16, u16 :UInt16, i32 :Int32, u32 :UInt32, i64 :Int64,
             u64 :UInt64, f32 :Float32, f64 :Float64, k :FlatKind);
}

# Flat results readers (mpgen: a results struct of data fields only, read as one value, none or an
# object, gets a DataView reader; the client's engine reads such a Return with no message):
# bools at bit offsets, a void method, one value (proto/test/flat-results.test.ts; FlatEcho there
# for every numeric kind and for results structs of other sizes).
interface FlatResults {
    flags @0 (a :Bool, b :Bool, n :UInt8) -> (a :Bool, n :UInt8, b :Bool);
    nothing @1 (x :Int32) -> ();
    half @2 (x :Float32) -> (x :Float32);
}
