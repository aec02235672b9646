/*
 * The kernel + scheduler share of a small-call round trip, for bench/src/floor.ts ("What the floor
 * is made of"): a C client and a C server (fork) in two processes ping-pong u32-length-prefixed
 * frames over a Unix socket, with no runtime at all. Build time: compiled by bench/src/floor-c.ts;
 * run time: one process per side, single-threaded.
 *
 *   pingpong MODE REQ_BYTES REPLY_BYTES N WARMUP
 *
 * MODE "block": blocking read()/write(), the least a round trip can cost. MODE "epoll": the
 * socket non-blocking, the reader waits in epoll_wait() before each read() and reads until EAGAIN,
 * as libuv's event loop does (uv__io_poll, uv__read), and writes with write() at once, as
 * uv_try_write does. Frame sizes include the 4-byte length prefix, like the bench's raw floor.
 *
 * Prints one JSON line: p50/p99 of the client's round trip (µs) and each side's CPU per round
 * trip (getrusage user+system, µs), measured over the N timed round trips.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static int use_epoll;
static int ep = -1;

static void die(const char *what) {
  perror(what);
  exit(2);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}

static void write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue; /* frames are small: never seen */
      die("write");
    }
    p += w;
    n -= (size_t)w;
  }
}

/*
 * Reads one frame of n bytes (the peer writes whole frames, one at a time). "epoll": wait, then
 * read into a 64 KiB buffer; a read shorter than the buffer ends the turn (as uv__read does).
 */
static int read_frame(int fd, uint8_t *buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    if (use_epoll) {
      struct epoll_event ev;
      int r = epoll_wait(ep, &ev, 1, -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        die("epoll_wait");
      }
    }
    ssize_t r = read(fd, buf + have, use_epoll ? 65536 : n - have);
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("read");
    }
    have += (size_t)r;
  }
  if (have != n) {
    fprintf(stderr, "pingpong: unexpected extra bytes\n");
    exit(2);
  }
  return 1;
}

static void setup_fd(int fd) {
  if (!use_epoll) return;
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = fd}};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: pingpong block|epoll REQ_BYTES REPLY_BYTES N WARMUP\n");
    return 2;
  }
  use_epoll = strcmp(argv[1], "epoll") == 0;
  size_t req = (size_t)atol(argv[2]), rep = (size_t)atol(argv[3]);
  long n = atol(argv[4]), warm = atol(argv[5]);
  if (req < 4 || rep < 4 || n <= 0 || warm < 0) {
    fprintf(stderr, "pingpong: bad arguments\n");
    return 2;
  }
  int sv[2], report[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
  if (pipe(report) < 0) die("pipe");
  uint8_t *rbuf = calloc(1, 65536 + (req > rep ? req : rep)), *reqb = calloc(1, req), *repb = calloc(1, rep);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    /* server: answer each request frame with a reply frame; report CPU over the timed part */
    close(sv[0]);
    setup_fd(sv[1]);
    double start = 0;
    for (long i = 0; i < warm + n; i++) {
      if (i == warm) start = cpu_us();
      if (!read_frame(sv[1], rbuf, req)) break;
      write_all(sv[1], repb, rep);
    }
    double cpu = cpu_us() - start;
    if (write(report[1], &cpu, sizeof cpu) != sizeof cpu) die("report");
    _exit(0);
  }
  close(sv[1]);
  setup_fd(sv[0]);
  double *lat = malloc(sizeof(double) * (size_t)n);
  double cpu0 = 0;
  for (long i = 0; i < warm + n; i++) {
    if (i == warm) cpu0 = cpu_us();
    double t0 = now_us();
    write_all(sv[0], reqb, req);
    if (!read_frame(sv[0], rbuf, rep)) die("server closed");
    if (i >= warm) lat[i - warm] = now_us() - t0;
  }
  double cpu = cpu_us() - cpu0;
  close(sv[0]);
  double scpu = 0;
  if (read(report[0], &scpu, sizeof scpu) != sizeof scpu) die("server report");
  waitpid(pid, NULL, 0);
  qsort(lat, (size_t)n, sizeof(double), cmp_double);
  printf("{\"mode\":\"%s\",\"n\":%ld,\"p50_us\":%.2f,\"p99_us\":%.2f,\"cpu_client_us\":%.2f,\"cpu_server_us\":%.2f}\n",
         argv[1], n, lat[n / 2], lat[(n * 99) / 100], cpu / n, scpu / n);
  return 0;
}
