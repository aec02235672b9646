# Test-only interfaces for the runtime and worker-thread tests (packages/runtime/test,
# test/races), next to upstream's foo.capnp: an Init with `construct` that hands out FooInterface
# objects, a FooInterface that can name the server thread a call runs on, a FooCallback that can
# also be a Connection's bootstrap and carry Proxy.Context calls, and a second Init handing out
# callbacks and functions (the relay tests' "printer" process). Generated into
# proto/src/test/fixtures.capnp.ts by `pnpm gen`.

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
