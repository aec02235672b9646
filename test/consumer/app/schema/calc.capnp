# The consumer test's own schema (test/consumer): an Init-style interface with construct, a
# callback parameter (Listener) and a returned capability (Counter).
@0xd3c5e9a1b2f40a17;

using Proxy = import "/mp/proxy.capnp";

interface Listener $Proxy.wrap("Listener") {
    destroy @0 (context :Proxy.Context) -> ();
    onResult @1 (context :Proxy.Context, text :Text) -> ();
}

interface Counter $Proxy.wrap("Counter") {
    destroy @0 (context :Proxy.Context) -> ();
    next @1 (context :Proxy.Context) -> (result :Int64);
}

interface Adder $Proxy.wrap("Adder") {
    construct @0 (threadMap :Proxy.ThreadMap) -> (threadMap :Proxy.ThreadMap);
    add @1 (context :Proxy.Context, a :Int32, b :Int32) -> (result :Int32);
    addAndTell @2 (context :Proxy.Context, a :Int32, b :Int32, listener :Listener) -> (result :Int32);
    makeCounter @3 (context :Proxy.Context, start :Int64) -> (result :Counter);
    whoami @4 (context :Proxy.Context) -> (result :Text);
}
