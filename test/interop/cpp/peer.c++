// The C++ reference peer for the conformance tests (test/interop). Built during the test run by
// test/interop/src/build.ts against Debian's libcapnp-rpc (0.9.2) via pkg-config.
//
// Modes:
//   serve --fd N          serve Calc (bootstrap) on an inherited socket fd; exit 0 when it ends
//   serve --unix PATH     serve Calc on a Unix socket, one Calc per connection; prints
//                         "ready" on stdout once listening; exits when stdin reaches EOF
//   client --unix PATH    run the conformance checks against a Calc server; one JSON line per check
//                         {"name","ok","error"} on stdout, then {"done":true}; exits 0
//   client --fd N         the same over an inherited socket fd
//   malformed --unix PATH --kind K
//                         connect, send one bad message (K: framing | segment-size | pointer |
//                         bad-target | unknown), read until EOF, print one JSON line describing
//                         what came back (an Abort's reason/type, an Unimplemented echo, EOF)
//   bench --unix PATH --n N [--warmup W]
//                         N sequential add calls after W warm-up calls; prints one JSON line
//                         {"n","p50_us","p99_us","mean_us"}
//
// Leak accounting: g_live counts server objects besides the bootstrap Calc objects (Counters in
// serve mode, Callbacks in client mode); g_held counts the peer's capabilities kept beyond a call.

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/exception.h>
#include <kj/string.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "conformance.capnp.h"

namespace {

int g_live = 0;
int g_held = 0;
kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> g_zeroWaiter;

struct Live {
  Live() { ++g_live; }
  ~Live() noexcept(false) {
    if (--g_live == 0) {
      KJ_IF_MAYBE(w, g_zeroWaiter) {
        (*w)->fulfill();
        g_zeroWaiter = nullptr;
      }
    }
  }
  KJ_DISALLOW_COPY(Live);
};

struct Held {
  Held() { ++g_held; }
  ~Held() { --g_held; }
  KJ_DISALLOW_COPY(Held);
};

// A Callback client kept beyond a call, counted in g_held.
struct HeldCallback: Held {
  explicit HeldCallback(Callback::Client cb): cb(kj::mv(cb)) {}
  Callback::Client cb;
};

std::string jsonEscape(kj::StringPtr s) {
  std::string out;
  for (char c: s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

const char* typeName(kj::Exception::Type t) {
  switch (t) {
    case kj::Exception::Type::FAILED: return "failed";
    case kj::Exception::Type::OVERLOADED: return "overloaded";
    case kj::Exception::Type::DISCONNECTED: return "disconnected";
    case kj::Exception::Type::UNIMPLEMENTED: return "unimplemented";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Servers

class CounterImpl final: public Counter::Server, Live {
public:
  explicit CounterImpl(int32_t start): value(start) {}

  kj::Promise<void> inc(IncContext context) override {
    value += context.getParams().getBy();
    context.getResults().setValue(value);
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext context) override {
    context.getResults().setValue(value);
    return kj::READY_NOW;
  }

private:
  int32_t value;
};

// Calls watcher.notify(2, "canceled") when destroyed, i.e. when hang()'s promise is canceled.
struct HangGuard: Held {
  explicit HangGuard(Callback::Client w): watcher(kj::mv(w)) {}
  ~HangGuard() noexcept(false) {
    auto req = watcher.notifyRequest();
    req.setValue(2);
    req.setMsg("canceled");
    req.send().then([](auto&&) {}).detach([](kj::Exception&&) {});
  }
  Callback::Client watcher;
};

class CalcImpl final: public Calc::Server {
public:
  kj::Promise<void> add(AddContext context) override {
    auto p = context.getParams();
    context.getResults().setSum(static_cast<int32_t>(
        static_cast<uint32_t>(p.getA()) + static_cast<uint32_t>(p.getB())));
    return kj::READY_NOW;
  }

  kj::Promise<void> echo(EchoContext context) override {
    auto p = context.getParams();
    // A tiny first segment makes large results span several segments.
    auto r = context.getResults(capnp::MessageSize{16, 0});
    r.setText(p.getText());
    r.setData(p.getData());
    return kj::READY_NOW;
  }

  kj::Promise<void> join(JoinContext context) override {
    auto parts = context.getParams().getParts();
    std::string joined;
    for (uint i = 0; i < parts.size(); ++i) {
      if (i > 0) joined += ",";
      joined += parts[i].cStr();
    }
    auto r = context.getResults();
    r.setJoined(joined.c_str());
    r.setCount(parts.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> sum(SumContext context) override {
    int64_t total = 0;
    for (int32_t v: context.getParams().getValues()) total += v;
    context.getResults().setTotal(total);
    return kj::READY_NOW;
  }

  kj::Promise<void> subscribe(SubscribeContext context) override {
    auto p = context.getParams();
    auto req = p.getCb().notifyRequest();
    req.setValue(p.getValue());
    req.setMsg("subscribe");
    return req.send().then([context](auto&& resp) mutable {
      context.getResults().setAck(resp.getAck());
    });
  }

  kj::Promise<void> makeCounter(MakeCounterContext context) override {
    context.getResults().setCounter(counters.add(kj::heap<CounterImpl>(context.getParams().getStart())));
    return kj::READY_NOW;
  }

  kj::Promise<void> readCounter(ReadCounterContext context) override {
    auto counter = context.getParams().getCounter();
    return counters.getLocalServer(counter).then([context, counter](auto local) mutable {
      bool isLocal = local != nullptr;
      return counter.getRequest().send().then([context, isLocal](auto&& resp) mutable {
        auto r = context.getResults();
        r.setValue(resp.getValue());
        r.setLocal(isLocal);
      });
    });
  }

  kj::Promise<void> makeCounterLater(MakeCounterLaterContext context) override {
    auto paf = kj::newPromiseAndFulfiller<Counter::Client>();
    pending.push_back(Pending{context.getParams().getStart(), kj::mv(paf.fulfiller)});
    context.getResults().setCounter(Counter::Client(kj::mv(paf.promise)));
    return kj::READY_NOW;
  }

  kj::Promise<void> resolvePending(ResolvePendingContext context) override {
    uint32_t n = pending.size();
    for (auto& p: pending) p.fulfiller->fulfill(counters.add(kj::heap<CounterImpl>(p.start)));
    pending.clear();
    context.getResults().setCount(n);
    return kj::READY_NOW;
  }

  kj::Promise<void> identity(IdentityContext context) override {
    context.getResults().setCb(context.getParams().getCb());
    return kj::READY_NOW;
  }

  kj::Promise<void> reflect(ReflectContext context) override {
    auto p = context.getParams();
    auto req = p.getCb().notifyRequest();
    req.setValue(p.getValue());
    req.setMsg("reflect");
    return context.tailCall(kj::mv(req));
  }

  kj::Promise<void> register_(RegisterContext context) override {
    registered = kj::heap<HeldCallback>(context.getParams().getCb());
    return kj::READY_NOW;
  }

  kj::Promise<void> fire(FireContext context) override {
    KJ_IF_MAYBE(h, registered) {
      auto req = (*h)->cb.notifyRequest();
      req.setValue(context.getParams().getValue());
      req.setMsg("fire");
      return req.send().then([context](auto&& resp) mutable {
        context.getResults().setAck(resp.getAck());
      });
    } else {
      return KJ_EXCEPTION(FAILED, "fire: no callback registered");
    }
  }

  kj::Promise<void> unregister(UnregisterContext context) override {
    registered = nullptr;
    return kj::READY_NOW;
  }

  kj::Promise<void> fail(FailContext context) override {
    auto p = context.getParams();
    kj::String msg = kj::str(p.getMsg());
    switch (p.getKind()) {
      case Kind::FAILED: return KJ_EXCEPTION(FAILED, msg);
      case Kind::OVERLOADED: return KJ_EXCEPTION(OVERLOADED, msg);
      case Kind::DISCONNECTED: return KJ_EXCEPTION(DISCONNECTED, msg);
      case Kind::UNIMPLEMENTED: return KJ_EXCEPTION(UNIMPLEMENTED, msg);
    }
    // Any other kind: an exception without a declared type (the TS server throws a plain Error).
    return KJ_EXCEPTION(FAILED, msg);
  }

  kj::Promise<void> hang(HangContext context) override {
    // Before capnp 1.0, a call can only be canceled by the caller if the callee allows it.
    context.allowCancellation();
    auto guard = kj::heap<HangGuard>(context.getParams().getWatcher());
    auto req = guard->watcher.notifyRequest();
    req.setValue(1);
    req.setMsg("started");
    return req.send()
        .then([](auto&&) -> kj::Promise<void> { return kj::NEVER_DONE; })
        .attach(kj::mv(guard));
  }

  kj::Promise<void> seq(SeqContext context) override {
    context.getResults().setPrev(lastSeq);
    lastSeq = context.getParams().getN();
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext context) override {
    auto r = context.getResults();
    r.setLive(g_live);
    r.setHeld(g_held);
    return kj::READY_NOW;
  }

private:
  struct Pending {
    int32_t start;
    kj::Own<kj::PromiseFulfiller<Counter::Client>> fulfiller;
  };
  capnp::CapabilityServerSet<Counter> counters;
  std::vector<Pending> pending;
  kj::Maybe<kj::Own<HeldCallback>> registered;
  uint32_t lastSeq = 0;
};

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = 64 * 1024 * 1024;
  return o;
}

// ---------------------------------------------------------------------------------------------
// serve

struct ServedConnection {
  explicit ServedConnection(kj::Own<kj::AsyncIoStream>&& s)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, readerOptions()),
        rpc(capnp::makeRpcServer(network, kj::heap<CalcImpl>())) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class ErrorLogger final: public kj::TaskSet::ErrorHandler {
public:
  void taskFailed(kj::Exception&& e) override {
    fprintf(stderr, "peer: task failed: %s\n", e.getDescription().cStr());
  }
};

int serveFd(int fd) {
  auto io = kj::setupAsyncIo();
  auto stream = io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto conn = kj::heap<ServedConnection>(kj::mv(stream));
  conn->network.onDisconnect().wait(io.waitScope);
  conn = nullptr;
  fprintf(stderr, "peer: fd connection ended, live=%d held=%d\n", g_live, g_held);
  return 0;
}

int serveUnix(kj::StringPtr path) {
  auto io = kj::setupAsyncIo();
  auto addr = io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(io.waitScope);
  auto listener = addr->listen();
  ErrorLogger logger;
  kj::TaskSet tasks(logger);

  std::function<kj::Promise<void>()> acceptLoop = [&]() -> kj::Promise<void> {
    return listener->accept().then([&](kj::Own<kj::AsyncIoStream>&& s) {
      auto conn = kj::heap<ServedConnection>(kj::mv(s));
      auto done = conn->network.onDisconnect();
      tasks.add(done.attach(kj::mv(conn)));
      return acceptLoop();
    });
  };
  tasks.add(acceptLoop());

  printf("ready\n");
  fflush(stdout);

  // Serve until stdin reaches EOF (the test process closed it or died).
  auto in = io.lowLevelProvider->wrapInputFd(0);
  char buf[256];
  for (;;) {
    size_t n = in->tryRead(buf, 1, sizeof(buf)).wait(io.waitScope);
    if (n == 0) break;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// client

struct CbCall {
  int32_t value;
  std::string msg;
};

class CallbackImpl final: public Callback::Server, Live {
public:
  explicit CallbackImpl(std::vector<CbCall>& log): log(log) {}
  kj::Promise<void> notify(NotifyContext context) override {
    auto p = context.getParams();
    log.push_back(CbCall{p.getValue(), p.getMsg().cStr()});
    context.getResults().setAck(p.getValue() + 1);
    return kj::READY_NOW;
  }

private:
  std::vector<CbCall>& log;
};

class WatcherImpl final: public Callback::Server, Live {
public:
  WatcherImpl(kj::Own<kj::PromiseFulfiller<void>> started,
              kj::Own<kj::PromiseFulfiller<void>> canceled)
      : started(kj::mv(started)), canceled(kj::mv(canceled)) {}
  kj::Promise<void> notify(NotifyContext context) override {
    auto v = context.getParams().getValue();
    if (v == 1) started->fulfill();
    if (v == 2) canceled->fulfill();
    context.getResults().setAck(v + 1);
    return kj::READY_NOW;
  }

private:
  kj::Own<kj::PromiseFulfiller<void>> started;
  kj::Own<kj::PromiseFulfiller<void>> canceled;
};

// A client connection made by hand (not EzRpcClient): EzRpcClient::getMain() returns a local
// promise while it connects, so every call through it is built locally and copied (flattened
// into one segment) when sent, and the first call is not really pipelined on the Bootstrap.
struct ClientConn {
  // Connects to the Unix socket `path`, or uses the inherited socket `fd` when path is empty.
  ClientConn(kj::StringPtr path, int fd)
      : io(kj::setupAsyncIo()),
        stream(path.size() > 0
                   ? io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(io.waitScope)
                         ->connect().wait(io.waitScope)
                   : io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT, readerOptions()),
        rpc(capnp::makeRpcClient(network)) {}

  Calc::Client bootstrap() {
    capnp::MallocMessageBuilder vatIdMessage(8);
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vatId).castAs<Calc>();
  }

  kj::AsyncIoContext io;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class Checks {
public:
  Checks(ClientConn& client): client(client), ws(client.io.waitScope),
      timer(client.io.provider->getTimer()) {}

  template <typename T>
  T wait(kj::Promise<T>&& p, const char* what = "operation") {
    return timer.timeoutAfter(10 * kj::SECONDS, kj::mv(p))
        .catch_([what](kj::Exception&& e) -> kj::Promise<T> {
          if (e.getType() == kj::Exception::Type::OVERLOADED &&
              e.getDescription().startsWith("operation timed out")) {
            return KJ_EXCEPTION(FAILED, "timed out after 10 s waiting for", what);
          }
          return kj::mv(e);
        })
        .wait(ws);
  }

  void run(const char* name, kj::Function<void()> fn) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { fn(); })) {
      printf("{\"name\":\"%s\",\"ok\":false,\"error\":\"%s\"}\n", name,
             jsonEscape(kj::str(typeName(e->getType()), ": ", e->getDescription())).c_str());
    } else {
      printf("{\"name\":\"%s\",\"ok\":true}\n", name);
    }
    fflush(stdout);
  }

  void all() {
    Calc::Client calc = client.bootstrap();
    std::vector<CbCall> log;

    run("bootstrap", [&]() {
      auto req = calc.addRequest();
      req.setA(2);
      req.setB(3);
      KJ_ASSERT(wait(req.send()).getSum() == 5);
    });

    run("bootstrap-twice", [&]() {
      // A second Bootstrap returns the same export again (its refcount goes up); dropping the
      // second client must release only that reference.
      {
        Calc::Client second = client.bootstrap();
        auto req = second.addRequest();
        req.setA(20);
        req.setB(22);
        KJ_ASSERT(wait(req.send()).getSum() == 42);
      }
      auto req = calc.addRequest();
      req.setA(1);
      req.setB(2);
      KJ_ASSERT(wait(req.send()).getSum() == 3);
    });

    run("scalars", [&]() {
      auto a = calc.addRequest();
      a.setA(INT32_MAX);
      a.setB(1);
      auto a2 = calc.addRequest();
      a2.setA(-7);
      a2.setB(4);
      auto s = calc.sumRequest();
      auto vals = s.initValues(4);
      vals.set(0, 1);
      vals.set(1, -2);
      vals.set(2, INT32_MAX);
      vals.set(3, INT32_MAX);
      auto r1 = a.send();
      auto r2 = a2.send();
      auto r3 = s.send();
      KJ_ASSERT(wait(kj::mv(r1)).getSum() == INT32_MIN);
      KJ_ASSERT(wait(kj::mv(r2)).getSum() == -3);
      auto total = wait(kj::mv(r3)).getTotal();
      KJ_ASSERT(total == int64_t(4294967293LL), total);
      auto e = calc.sumRequest();
      e.initValues(0);
      KJ_ASSERT(wait(e.send()).getTotal() == 0);
    });

    run("text-data", [&]() {
      const char* text = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93";
      auto req = calc.echoRequest();
      req.setText(text);
      kj::byte bytes[256];
      for (int i = 0; i < 256; ++i) bytes[i] = i;
      req.setData(kj::arrayPtr(bytes, 256));
      auto resp = wait(req.send());
      KJ_ASSERT(resp.getText() == text, resp.getText());
      KJ_ASSERT(resp.getData() == kj::arrayPtr(bytes, 256));

      auto j = calc.joinRequest();
      auto parts = j.initParts(4);
      parts.set(0, "a");
      parts.set(1, "bb");
      parts.set(2, "");
      parts.set(3, "c\xc3\xa7");
      auto jr = wait(j.send());
      KJ_ASSERT(jr.getJoined() == "a,bb,,c\xc3\xa7", jr.getJoined());
      KJ_ASSERT(jr.getCount() == 4);

      auto j0 = calc.joinRequest();
      j0.initParts(0);
      auto jr0 = wait(j0.send());
      KJ_ASSERT(jr0.getJoined() == "" && jr0.getCount() == 0);
    });

    run("big-data", [&]() {
      const size_t n = 1 << 20;
      auto data = kj::heapArray<kj::byte>(n);
      for (size_t i = 0; i < n; ++i) data[i] = (i * 7) % 251;
      std::string text(100 * 1024, 'x');
      for (size_t i = 0; i < text.size(); ++i) text[i] = 'a' + (i % 26);
      // A tiny first segment forces the Call to span several segments.
      auto req = calc.echoRequest(capnp::MessageSize{16, 0});
      req.setText(text.c_str());
      req.setData(data);
      auto resp = wait(req.send());
      KJ_ASSERT(resp.getData().size() == n, resp.getData().size());
      KJ_ASSERT(resp.getData() == data.asPtr(), "1 MiB Data differs");
      KJ_ASSERT(resp.getText() == text.c_str(), "100 KiB Text differs");
    });

    run("callback-during-call", [&]() {
      log.clear();
      auto req = calc.subscribeRequest();
      req.setCb(kj::heap<CallbackImpl>(log));
      req.setValue(41);
      auto ack = wait(req.send()).getAck();
      KJ_ASSERT(ack == 42, ack);
      KJ_ASSERT(log.size() == 1 && log[0].value == 41 && log[0].msg == "subscribe", log.size());
    });

    run("promise-param", [&]() {
      // A promise capability as a param (senderPromise), resolved by us after the call is sent;
      // the callee's call on it waits for our Resolve.
      log.clear();
      auto paf = kj::newPromiseAndFulfiller<Callback::Client>();
      auto req = calc.subscribeRequest();
      req.setCb(Callback::Client(kj::mv(paf.promise)));
      req.setValue(50);
      auto pending = req.send();
      paf.fulfiller->fulfill(kj::heap<CallbackImpl>(log));
      auto ack = wait(kj::mv(pending)).getAck();
      KJ_ASSERT(ack == 51, ack);
      KJ_ASSERT(log.size() == 1 && log[0].value == 50 && log[0].msg == "subscribe", log.size());
    });

    run("null-cap", [&]() {
      // A null capability param: the callee's call on it fails, and the error comes back typed.
      auto req = calc.subscribeRequest();
      req.setValue(1);
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { wait(req.send()); })) {
        KJ_ASSERT(e->getType() == kj::Exception::Type::FAILED, typeName(e->getType()), e->getDescription());
      } else {
        KJ_FAIL_ASSERT("subscribe(null) returned normally");
      }
    });

    kj::Maybe<Counter::Client> keptCounter;
    run("cap-result", [&]() {
      auto req = calc.makeCounterRequest();
      req.setStart(10);
      auto counter = wait(req.send()).getCounter();
      auto inc = counter.incRequest();
      inc.setBy(1);
      KJ_ASSERT(wait(inc.send()).getValue() == 11);
      KJ_ASSERT(wait(counter.getRequest().send()).getValue() == 11);
      keptCounter = kj::mv(counter);
    });

    run("cap-param-own", [&]() {
      KJ_IF_MAYBE(c, keptCounter) {
        auto req = calc.readCounterRequest();
        req.setCounter(*c);
        auto resp = wait(req.send());
        KJ_ASSERT(resp.getValue() == 11, resp.getValue());
        KJ_ASSERT(resp.getLocal(), "the callee did not recognise its own Counter");
      } else {
        KJ_FAIL_ASSERT("no counter from cap-result");
      }
      keptCounter = nullptr;
    });

    run("cap-param-pipelined", [&]() {
      // A capability from a result we have not received yet, passed back as a param
      // (CapDescriptor.receiverAnswer): the callee must see its own object.
      auto mk = calc.makeCounterRequest();
      mk.setStart(7);
      auto promise = mk.send();
      auto rc = calc.readCounterRequest();
      rc.setCounter(promise.getCounter());
      auto resp = wait(rc.send());
      KJ_ASSERT(resp.getValue() == 7, resp.getValue());
      KJ_ASSERT(resp.getLocal(), "the callee did not recognise its own (pipelined) Counter");
      wait(kj::mv(promise));
    });

    run("pipelined-result", [&]() {
      auto req = calc.makeCounterRequest();
      req.setStart(5);
      auto promise = req.send();
      auto counter = promise.getCounter();
      auto i1 = counter.incRequest();
      i1.setBy(2);
      auto i2 = counter.incRequest();
      i2.setBy(3);
      auto p1 = i1.send();
      auto p2 = i2.send();
      auto p3 = counter.getRequest().send();
      KJ_ASSERT(wait(kj::mv(p1)).getValue() == 7);
      KJ_ASSERT(wait(kj::mv(p2)).getValue() == 10);
      KJ_ASSERT(wait(kj::mv(p3)).getValue() == 10);
      wait(kj::mv(promise));
    });

    run("register-fire", [&]() {
      log.clear();
      auto reg = calc.registerRequest();
      reg.setCb(kj::heap<CallbackImpl>(log));
      wait(reg.send());
      for (int v: {5, 6}) {
        auto f = calc.fireRequest();
        f.setValue(v);
        auto ack = wait(f.send()).getAck();
        KJ_ASSERT(ack == v + 1, ack);
      }
      KJ_ASSERT(log.size() == 2 && log[0].msg == "fire" && log[1].value == 6, log.size());
      wait(calc.unregisterRequest().send());
    });

    run("promise-resolve", [&]() {
      auto req = calc.makeCounterLaterRequest();
      req.setStart(100);
      auto promise = req.send();
      auto inc = [&](Counter::Client c, int by) {
        auto r = c.incRequest();
        r.setBy(by);
        return r.send();
      };
      auto p1 = inc(promise.getCounter(), 1);          // pipelined before the Return
      auto counter = wait(kj::mv(promise)).getCounter();
      auto p2 = inc(counter, 2);                        // on the promise cap, before Resolve
      auto count = wait(calc.resolvePendingRequest().send()).getCount();
      KJ_ASSERT(count == 1, count);
      auto p3 = inc(counter, 3);                        // after resolvePending returned
      KJ_ASSERT(wait(kj::mv(p1)).getValue() == 101);
      KJ_ASSERT(wait(kj::mv(p2)).getValue() == 103);
      KJ_ASSERT(wait(kj::mv(p3)).getValue() == 106);
      wait(counter.whenResolved());
      KJ_ASSERT(wait(inc(counter, 4)).getValue() == 110);  // after Resolve
    });

    run("identity-await", [&]() {
      log.clear();
      capnp::CapabilityServerSet<Callback> set;
      Callback::Client cb = set.add(kj::heap<CallbackImpl>(log));
      auto req = calc.identityRequest();
      req.setCb(cb);
      auto back = wait(req.send()).getCb();
      auto local = wait(set.getLocalServer(back));
      KJ_ASSERT(local != nullptr, "identity() result is not our own Callback");
      auto n = back.notifyRequest();
      n.setValue(9);
      KJ_ASSERT(wait(n.send()).getAck() == 10);
      KJ_ASSERT(log.size() == 1);
    });

    run("identity-pipelined", [&]() {
      log.clear();
      auto req = calc.identityRequest();
      req.setCb(kj::heap<CallbackImpl>(log));
      auto promise = req.send();
      auto n = promise.getCb().notifyRequest();
      n.setValue(11);
      n.setMsg("pipelined");
      auto ack = wait(n.send()).getAck();
      KJ_ASSERT(ack == 12, ack);
      KJ_ASSERT(log.size() == 1 && log[0].msg == "pipelined");
      wait(kj::mv(promise));
    });

    run("tail-call", [&]() {
      log.clear();
      auto req = calc.reflectRequest();
      req.setCb(kj::heap<CallbackImpl>(log));
      req.setValue(20);
      auto ack = wait(req.send()).getAck();
      KJ_ASSERT(ack == 21, ack);
      KJ_ASSERT(log.size() == 1 && log[0].msg == "reflect");
    });

    struct K { const char* name; Kind kind; kj::Exception::Type type; };
    for (auto k: {K{"exception-failed", Kind::FAILED, kj::Exception::Type::FAILED},
                  K{"exception-overloaded", Kind::OVERLOADED, kj::Exception::Type::OVERLOADED},
                  K{"exception-disconnected", Kind::DISCONNECTED, kj::Exception::Type::DISCONNECTED},
                  K{"exception-unimplemented", Kind::UNIMPLEMENTED, kj::Exception::Type::UNIMPLEMENTED}}) {
      run(k.name, [&]() {
        auto req = calc.failRequest();
        req.setKind(k.kind);
        kj::String msg = kj::str("boom-", k.name);
        req.setMsg(msg);
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { wait(req.send()); })) {
          KJ_ASSERT(e->getType() == k.type, typeName(e->getType()), e->getDescription());
          KJ_ASSERT(e->getDescription().endsWith(msg), e->getDescription());
        } else {
          KJ_FAIL_ASSERT("fail() returned normally");
        }
      });
    }

    run("exception-plain", [&]() {
      // Kind 7 is not a declared Kind: the callee throws an untyped error, which must arrive as
      // FAILED with its message.
      auto req = calc.failRequest();
      req.setKind(static_cast<Kind>(7));
      req.setMsg("boom-exception-plain");
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { wait(req.send()); })) {
        KJ_ASSERT(e->getType() == kj::Exception::Type::FAILED, typeName(e->getType()), e->getDescription());
        KJ_ASSERT(std::string(e->getDescription().cStr()).find("boom-exception-plain") != std::string::npos,
                  e->getDescription());
      } else {
        KJ_FAIL_ASSERT("fail() returned normally");
      }
    });

    run("exception-typed", [&]() {
      // Kind 8: the TS callee throws a TypeError. Its name and code cross in our own form, which a
      // C++ peer must still print readably: "TypeError: <msg>" as the reason, and a one-line
      // `multiprocess-ts {"name":...,"code":...}` remote trace.
      auto req = calc.failRequest();
      req.setKind(static_cast<Kind>(8));
      req.setMsg("boom-exception-typed");
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { wait(req.send()); })) {
        KJ_ASSERT(e->getType() == kj::Exception::Type::FAILED, typeName(e->getType()), e->getDescription());
        KJ_ASSERT(e->getDescription().endsWith("TypeError: boom-exception-typed"), e->getDescription());
        KJ_ASSERT(e->getRemoteTrace() == "multiprocess-ts {\"name\":\"TypeError\",\"code\":\"MP_ERR_FAILED\"}",
                  e->getRemoteTrace());
      } else {
        KJ_FAIL_ASSERT("fail() returned normally");
      }
    });

    run("unknown-method", [&]() {
      auto req = calc.typelessRequest(capnp::typeId<Calc>(), 99, nullptr);
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { wait(req.send()); })) {
        KJ_ASSERT(e->getType() == kj::Exception::Type::UNIMPLEMENTED, typeName(e->getType()),
                  e->getDescription());
      } else {
        KJ_FAIL_ASSERT("method 99 returned normally");
      }
      // The connection is still usable.
      auto a = calc.addRequest();
      a.setA(1);
      a.setB(1);
      KJ_ASSERT(wait(a.send()).getSum() == 2);
    });

    run("cancel", [&]() {
      auto started = kj::newPromiseAndFulfiller<void>();
      auto canceled = kj::newPromiseAndFulfiller<void>();
      auto req = calc.hangRequest();
      req.setWatcher(kj::heap<WatcherImpl>(kj::mv(started.fulfiller), kj::mv(canceled.fulfiller)));
      {
        auto pending = req.send();
        wait(kj::mv(started.promise), "hang() to start");
        // Dropping the promise sends Finish before any Return.
      }
      wait(kj::mv(canceled.promise), "the callee to observe the cancellation");
      auto a = calc.addRequest();
      a.setA(3);
      a.setB(4);
      KJ_ASSERT(wait(a.send()).getSum() == 7);
    });

    run("order-1000", [&]() {
      auto r0 = calc.seqRequest();
      r0.setN(0);
      wait(r0.send());
      std::vector<capnp::RemotePromise<Calc::SeqResults>> ps;
      for (uint32_t i = 1; i <= 1000; ++i) {
        auto r = calc.seqRequest();
        r.setN(i);
        ps.push_back(r.send());
      }
      uint32_t bad = 0, first = 0;
      for (uint32_t i = 1; i <= 1000; ++i) {
        auto prev = wait(kj::mv(ps[i - 1])).getPrev();
        if (prev != i - 1) {
          if (bad++ == 0) first = i;
        }
      }
      KJ_ASSERT(bad == 0, bad, first);
    });

    run("release", [&]() {
      auto st = wait(calc.statsRequest().send());
      KJ_ASSERT(st.getLive() == 0 && st.getHeld() == 0, "callee leaks", st.getLive(), st.getHeld());
      if (g_live != 0) {
        auto paf = kj::newPromiseAndFulfiller<void>();
        g_zeroWaiter = kj::mv(paf.fulfiller);
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          wait(kj::mv(paf.promise), "the callee to release our Callbacks");
        })) {
          g_zeroWaiter = nullptr;
          KJ_FAIL_ASSERT("our exported Callbacks still alive", g_live, e->getDescription());
        }
      }
    });

    // Last: leave a call pending while the connection goes away (the process exits after this).
    // The callee must abort it (IncomingCall.signal) and release everything on its side.
    run("hang-at-exit", [&]() {
      auto started = kj::newPromiseAndFulfiller<void>();
      auto canceled = kj::newPromiseAndFulfiller<void>();
      auto req = calc.hangRequest();
      req.setWatcher(kj::heap<WatcherImpl>(kj::mv(started.fulfiller), kj::mv(canceled.fulfiller)));
      leftPending = req.send();
      wait(kj::mv(started.promise), "hang() to start");
    });
  }

  kj::Maybe<capnp::RemotePromise<Calc::HangResults>> leftPending;

private:
  ClientConn& client;
  kj::WaitScope& ws;
  kj::Timer& timer;
};

int runClient(kj::StringPtr path, int fd) {
  ClientConn client(path, fd);
  Checks checks(client);
  checks.all();
  printf("{\"done\":true,\"live\":%d}\n", g_live);
  fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// bench

int runBench(kj::StringPtr path, int n, int warmup) {
  ClientConn client(path, -1);
  auto& ws = client.io.waitScope;
  Calc::Client calc = client.bootstrap();
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < warmup + n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto req = calc.addRequest();
    req.setA(i);
    req.setB(1);
    auto sum = req.send().wait(ws).getSum();
    auto t1 = std::chrono::steady_clock::now();
    KJ_ASSERT(sum == i + 1);
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  double mean = 0;
  for (double v: us) mean += v;
  mean /= us.size();
  auto pct = [&](double p) { return us[std::min(us.size() - 1, size_t(p * us.size()))]; };
  printf("{\"n\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f}\n", n, pct(0.50), pct(0.99), mean);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// malformed

kj::Array<capnp::word> callToMissingImport() {
  // A well-formed rpc Message: a Call whose target is an import id the peer never exported.
  capnp::MallocMessageBuilder mb;
  auto call = mb.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(0);
  call.initTarget().setImportedCap(12345);
  call.setInterfaceId(capnp::typeId<Calc>());
  call.setMethodId(0);
  call.initParams().initContent();
  return capnp::messageToFlatArray(mb);
}

kj::Array<capnp::word> unknownMessage() {
  // A well-formed rpc Message whose union discriminant (the first 16 bits of its data word) is 99,
  // which rpc.capnp does not define. A Level-1 peer answers Unimplemented echoing it and keeps the
  // connection.
  capnp::MallocMessageBuilder mb;
  mb.initRoot<capnp::rpc::Message>().initAbort().setReason("never read");
  auto arr = capnp::messageToFlatArray(mb);
  auto bytes = arr.asBytes();
  // [segment table: 8 bytes][root pointer: 8 bytes][Message data word: discriminant first]
  KJ_ASSERT(bytes.size() >= 24);
  bytes[16] = 99;
  bytes[17] = 0;
  return arr;
}

int runMalformed(kj::StringPtr path, kj::StringPtr kind) {
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  auto addr = io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(ws);
  auto stream = addr->connect().wait(ws);

  kj::Array<kj::byte> bytes;
  if (kind == "framing") {
    // Segment count 2^31: no sane reader accepts this.
    bytes = kj::heapArray<kj::byte>({0xff, 0xff, 0xff, 0x7f, 0x01, 0x00, 0x00, 0x00});
  } else if (kind == "segment-size") {
    // One segment of 2^31-1 words (16 GiB).
    bytes = kj::heapArray<kj::byte>({0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f});
  } else if (kind == "pointer") {
    // One segment of 1 word whose root struct pointer points 1000 words past the end.
    bytes = kj::heapArray<kj::byte>({0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                                     0xa0, 0x0f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00});
  } else if (kind == "bad-target") {
    auto w = callToMissingImport();
    bytes = kj::heapArray<kj::byte>(w.asBytes());
  } else if (kind == "unknown") {
    auto w = unknownMessage();
    bytes = kj::heapArray<kj::byte>(w.asBytes());
  } else {
    fprintf(stderr, "unknown --kind %s\n", kind.cStr());
    return 2;
  }
  stream->write(bytes.begin(), bytes.size()).wait(ws);

  // Read what comes back until EOF (or 10 s).
  auto& timer = io.provider->getTimer();
  std::string got = "";
  bool eof = false;
  for (;;) {
    auto readOne = capnp::tryReadMessage(*stream, readerOptions())
        .then([](kj::Maybe<kj::Own<capnp::MessageReader>>&& m) { return kj::mv(m); });
    kj::Maybe<kj::Own<capnp::MessageReader>> msg;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      msg = timer.timeoutAfter(10 * kj::SECONDS, kj::mv(readOne)).wait(ws);
    })) {
      if (!got.empty()) got += ",";
      got += "{\"error\":\"" + jsonEscape(e->getDescription()) + "\"}";
      break;
    }
    KJ_IF_MAYBE(m, msg) {
      auto rm = (*m)->getRoot<capnp::rpc::Message>();
      if (!got.empty()) got += ",";
      switch (rm.which()) {
        case capnp::rpc::Message::ABORT: {
          auto ex = rm.getAbort();
          got += "{\"abort\":\"" + jsonEscape(ex.getReason()) + "\",\"type\":\"" +
                 typeName(static_cast<kj::Exception::Type>(ex.getType())) + "\"}";
          break;
        }
        case capnp::rpc::Message::UNIMPLEMENTED: {
          auto inner = rm.getUnimplemented();
          got += "{\"unimplemented\":" + std::to_string(static_cast<int>(inner.which())) + "}";
          break;
        }
        default:
          got += "{\"other\":" + std::to_string(static_cast<int>(rm.which())) + "}";
      }
      if (kind == "unknown" && rm.which() == capnp::rpc::Message::UNIMPLEMENTED) {
        // Connection still open: prove it by sending a Bootstrap and reading its Return.
        capnp::MallocMessageBuilder mb;
        mb.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
        capnp::writeMessage(*stream, mb).wait(ws);
        auto reply = timer.timeoutAfter(10 * kj::SECONDS,
                                        capnp::tryReadMessage(*stream, readerOptions())).wait(ws);
        KJ_IF_MAYBE(r, reply) {
          auto rr = (*r)->getRoot<capnp::rpc::Message>();
          got += std::string(",{\"afterwards\":") +
                 (rr.which() == capnp::rpc::Message::RETURN ? "\"return\"" : "\"other\"") + "}";
        } else {
          got += ",{\"afterwards\":\"eof\"}";
        }
        break;
      }
    } else {
      eof = true;
      break;
    }
  }
  printf("{\"kind\":\"%s\",\"eof\":%s,\"got\":[%s]}\n", kind.cStr(), eof ? "true" : "false",
         got.c_str());
  fflush(stdout);
  return 0;
}

[[noreturn]] void usage() {
  fprintf(stderr,
          "usage: peer serve --fd N | serve --unix PATH | client --unix PATH | client --fd N |\n"
          "       malformed --unix PATH --kind K | bench --unix PATH --n N [--warmup W]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string mode = argv[1];
  std::string unixPath, kind;
  int fd = -1, n = 5000, warmup = 500;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    if (a == "--fd") fd = atoi(argv[++i]);
    else if (a == "--unix") unixPath = argv[++i];
    else if (a == "--kind") kind = argv[++i];
    else if (a == "--n") n = atoi(argv[++i]);
    else if (a == "--warmup") warmup = atoi(argv[++i]);
    else usage();
  }
  try {
    if (mode == "serve" && fd >= 0) return serveFd(fd);
    if (mode == "serve" && !unixPath.empty()) return serveUnix(unixPath.c_str());
    if (mode == "client" && !unixPath.empty()) return runClient(unixPath.c_str(), -1);
    if (mode == "client" && fd >= 0) return runClient("", fd);
    if (mode == "bench" && !unixPath.empty()) return runBench(unixPath.c_str(), n, warmup);
    if (mode == "malformed" && !unixPath.empty() && !kind.empty())
      return runMalformed(unixPath.c_str(), kind.c_str());
  } catch (kj::Exception& e) {
    fprintf(stderr, "peer: %s\n", e.getDescription().cStr());
    return 1;
  }
  usage();
}
