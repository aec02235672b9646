// C++ reference for `pnpm bench`: plain Cap'n Proto RPC (Debian libcapnp-rpc, two-party vat
// network over a Unix socket) on the same schema as the TS figures (proto/test/foo.capnp,
// FooInterface). Built by bench/src/cpp.ts with `capnp compile -oc++` + g++ -O2 into bench/.build.
//
// Modes:
//   serve --unix PATH     FooInterface server (add, passData, saveCallback/callbackSaved,
//                         callIntFnAsync = arg + 1); prints "ready", exits when stdin reaches EOF.
//   client --unix PATH [--n N] [--warmup W] [--seconds S] [--inflight K] [--data-bytes B]
//          [--data-n M]       runs the figures and prints one JSON line:
//                         {"add":{p50_us,p99_us,mean_us,n},"pipelined":{calls,seconds,rate},
//                          "ctx":{...},"callback":{...},"data":{bytes,n,mbps}}
// Proxy.Context params are left null: plain capnp has no thread mapping.

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "test/foo.capnp.h"

namespace {

using mp::test::messages::FooCallback;
using mp::test::messages::FooInterface;
using Clock = std::chrono::steady_clock;

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = 64 * 1024 * 1024;
  return o;
}

class FooImpl final: public FooInterface::Server {
public:
  kj::Promise<void> add(AddContext context) override {
    auto p = context.getParams();
    context.getResults().setResult(p.getA() + p.getB());
    return kj::READY_NOW;
  }
  kj::Promise<void> passData(PassDataContext context) override {
    context.getResults().setResult(context.getParams().getArg());
    return kj::READY_NOW;
  }
  kj::Promise<void> callIntFnAsync(CallIntFnAsyncContext context) override {
    context.getResults().setResult(context.getParams().getArg() + 1);
    return kj::READY_NOW;
  }
  kj::Promise<void> saveCallback(SaveCallbackContext context) override {
    saved = context.getParams().getCallback();
    return kj::READY_NOW;
  }
  kj::Promise<void> callbackSaved(CallbackSavedContext context) override {
    KJ_IF_MAYBE(cb, saved) {
      auto req = cb->callRequest();
      req.setArg(context.getParams().getArg());
      return req.send().then([context](capnp::Response<FooCallback::CallResults>&& r) mutable {
        context.getResults().setResult(r.getResult());
      });
    }
    KJ_FAIL_REQUIRE("no saved callback");
  }

private:
  kj::Maybe<FooCallback::Client> saved;
};

class CallbackImpl final: public FooCallback::Server {
public:
  kj::Promise<void> call(CallContext context) override {
    context.getResults().setResult(context.getParams().getArg() * 2);
    return kj::READY_NOW;
  }
};

struct ServedConnection {
  explicit ServedConnection(kj::Own<kj::AsyncIoStream>&& s)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, readerOptions()),
        rpc(capnp::makeRpcServer(network, kj::heap<FooImpl>())) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class ErrorLogger final: public kj::TaskSet::ErrorHandler {
public:
  void taskFailed(kj::Exception&& e) override {
    fprintf(stderr, "foo-bench: task failed: %s\n", e.getDescription().cStr());
  }
};

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
  auto in = io.lowLevelProvider->wrapInputFd(0);
  char buf[256];
  for (;;) {
    size_t n = in->tryRead(buf, 1, sizeof(buf)).wait(io.waitScope);
    if (n == 0) break;
  }
  return 0;
}

struct Stats {
  double p50, p99, mean;
  size_t n;
};

Stats summarize(std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  double mean = 0;
  for (double v: us) mean += v;
  mean /= us.size();
  auto pct = [&](double p) { return us[std::min(us.size() - 1, size_t(p * us.size()))]; };
  return {pct(0.5), pct(0.99), mean, us.size()};
}

std::string statsJson(const Stats& s) {
  char b[200];
  snprintf(b, sizeof(b), "{\"n\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f}", s.n, s.p50, s.p99, s.mean);
  return b;
}

// CPU time (ns) a single-threaded process has used: the first field of /proc/PID/schedstat (the
// main thread's time on a CPU). -1 when the file is missing (then the JSON says null).
double cpuNs(long pid) {
  char path[64];
  if (pid > 0) snprintf(path, sizeof(path), "/proc/%ld/schedstat", pid);
  else snprintf(path, sizeof(path), "/proc/self/schedstat");
  FILE* f = fopen(path, "r");
  if (f == nullptr) return -1;
  unsigned long long ns = 0;
  int got = fscanf(f, "%llu", &ns);
  fclose(f);
  return got == 1 ? double(ns) : -1;
}

// CPU µs per call of this client and of the server (--server-pid) over one phase.
struct CpuWindow {
  long serverPid;
  double c0, s0;
  explicit CpuWindow(long pid): serverPid(pid), c0(cpuNs(0)), s0(pid > 0 ? cpuNs(pid) : -1) {}
  std::string json(double calls) const {
    double c1 = cpuNs(0), s1 = serverPid > 0 ? cpuNs(serverPid) : -1;
    char b[160];
    auto one = [&](double a, double z, char* out, size_t len) {
      if (a < 0 || z < 0) snprintf(out, len, "null");
      else snprintf(out, len, "%.2f", (z - a) / 1000.0 / calls);
    };
    char cs[40], ss[40];
    one(c0, c1, cs, sizeof(cs));
    one(s0, s1, ss, sizeof(ss));
    snprintf(b, sizeof(b), "{\"client_us\":%s,\"server_us\":%s}", cs, ss);
    return b;
  }
};

double usSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

int runClient(kj::StringPtr path, int n, int warmup, double seconds, int inflight, size_t dataBytes, int dataN, long serverPid) {
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  auto stream = io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(ws)->connect().wait(ws);
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT, readerOptions());
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder vatIdMessage(8);
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  FooInterface::Client foo = rpc.bootstrap(vatId).castAs<FooInterface>();

  // Sequential add; CPU per call over the timed calls only (the Node rows' window).
  std::vector<double> us;
  us.reserve(n);
  kj::Maybe<CpuWindow> addWindow;
  for (int i = 0; i < warmup + n; ++i) {
    if (i == warmup) addWindow = CpuWindow(serverPid);
    auto t0 = Clock::now();
    auto req = foo.addRequest();
    req.setA(i);
    req.setB(1);
    auto sum = req.send().wait(ws).getResult();
    double d = usSince(t0);
    KJ_ASSERT(sum == i + 1);
    if (i >= warmup) us.push_back(d);
  }
  std::string addCpu = KJ_ASSERT_NONNULL(addWindow).json(n);
  Stats add = summarize(us);

  // Pipelined: `inflight` calls outstanding for `seconds`.
  uint64_t calls = 0;
  CpuWindow pipeWindow(serverPid);
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::function<kj::Promise<void>()> lane = [&]() -> kj::Promise<void> {
    auto req = foo.addRequest();
    req.setA(1);
    req.setB(2);
    return req.send().then([&](capnp::Response<FooInterface::AddResults>&& r) -> kj::Promise<void> {
      KJ_ASSERT(r.getResult() == 3);
      ++calls;
      if (Clock::now() < deadline) return lane();
      return kj::READY_NOW;
    });
  };
  {
    auto lanes = kj::heapArrayBuilder<kj::Promise<void>>(inflight);
    for (int i = 0; i < inflight; ++i) lanes.add(lane());
    kj::joinPromises(lanes.finish()).wait(ws);
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::string pipeCpu = pipeWindow.json(double(calls));

  // Context method (callIntFnAsync), sequential; Context left null.
  us.clear();
  for (int i = 0; i < warmup + n; ++i) {
    auto t0 = Clock::now();
    auto req = foo.callIntFnAsyncRequest();
    req.setArg(i);
    auto r = req.send().wait(ws).getResult();
    double d = usSince(t0);
    KJ_ASSERT(r == i + 1);
    if (i >= warmup) us.push_back(d);
  }
  Stats ctx = summarize(us);

  // Callback round trip: saveCallback once, then callbackSaved.
  {
    auto req = foo.saveCallbackRequest();
    req.setCallback(kj::heap<CallbackImpl>());
    req.send().wait(ws);
  }
  us.clear();
  kj::Maybe<CpuWindow> cbWindow;
  for (int i = 0; i < warmup + n; ++i) {
    if (i == warmup) cbWindow = CpuWindow(serverPid);
    auto t0 = Clock::now();
    auto req = foo.callbackSavedRequest();
    req.setArg(i);
    auto r = req.send().wait(ws).getResult();
    double d = usSince(t0);
    KJ_ASSERT(r == i * 2);
    if (i >= warmup) us.push_back(d);
  }
  std::string cbCpu = KJ_ASSERT_NONNULL(cbWindow).json(n);
  Stats cb = summarize(us);

  // 1 MiB Data echo.
  std::vector<uint8_t> payload(dataBytes);
  for (size_t i = 0; i < dataBytes; ++i) payload[i] = uint8_t(i * 7);
  int dataWarm = std::max(2, dataN / 10);
  Clock::time_point dt0;
  for (int i = 0; i < dataWarm + dataN; ++i) {
    if (i == dataWarm) dt0 = Clock::now();
    auto req = foo.passDataRequest();
    req.setArg(kj::arrayPtr(payload.data(), payload.size()));
    auto resp = req.send().wait(ws);
    auto got = resp.getResult();
    KJ_ASSERT(got.size() == dataBytes && got[dataBytes - 1] == payload[dataBytes - 1]);
  }
  double dataSecs = std::chrono::duration<double>(Clock::now() - dt0).count();
  double mbps = double(dataBytes) * dataN / dataSecs / 1e6;

  printf("{\"add\":%s,\"pipelined\":{\"calls\":%llu,\"seconds\":%.3f,\"rate\":%.1f},\"ctx\":%s,\"callback\":%s,"
         "\"data\":{\"bytes\":%zu,\"n\":%d,\"mbps\":%.1f},\"cpu\":{\"add\":%s,\"pipelined\":%s,\"callback\":%s}}\n",
         statsJson(add).c_str(), (unsigned long long)calls, elapsed, calls / elapsed, statsJson(ctx).c_str(),
         statsJson(cb).c_str(), dataBytes, dataN, mbps, addCpu.c_str(), pipeCpu.c_str(), cbCpu.c_str());
  fflush(stdout);
  return 0;
}

[[noreturn]] void usage() {
  fprintf(stderr, "usage: foo-bench serve --unix PATH | client --unix PATH [--n N] [--warmup W] [--seconds S] "
                  "[--inflight K] [--data-bytes B] [--data-n M] [--server-pid PID]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string mode = argv[1];
  std::string unixPath;
  int n = 10000, warmup = 2000, inflight = 64, dataN = 50;
  double seconds = 3;
  size_t dataBytes = 1 << 20;
  long serverPid = 0;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    if (a == "--unix") unixPath = argv[++i];
    else if (a == "--n") n = atoi(argv[++i]);
    else if (a == "--warmup") warmup = atoi(argv[++i]);
    else if (a == "--seconds") seconds = atof(argv[++i]);
    else if (a == "--inflight") inflight = atoi(argv[++i]);
    else if (a == "--data-bytes") dataBytes = size_t(atoll(argv[++i]));
    else if (a == "--data-n") dataN = atoi(argv[++i]);
    else if (a == "--server-pid") serverPid = atol(argv[++i]);
    else usage();
  }
  if (unixPath.empty() || n <= 0 || inflight <= 0 || dataN <= 0) usage();
  try {
    if (mode == "serve") return serveUnix(unixPath.c_str());
    if (mode == "client") return runClient(unixPath.c_str(), n, warmup, seconds, inflight, dataBytes, dataN, serverPid);
  } catch (kj::Exception& e) {
    fprintf(stderr, "foo-bench: %s\n", e.getDescription().cStr());
    return 1;
  }
  usage();
}
