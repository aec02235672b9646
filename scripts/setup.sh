#!/usr/bin/env bash
# Provision a fresh Debian 12 machine for multiprocess-ts, from a clean clone:
# the Cap'n Proto compiler and C++ library (for the schema-compiler oracle tests, mpgen --capnp and the
# C++ conformance peer; mpgen itself needs no native code), pnpm, and the
# workspace's npm dependencies. Idempotent; run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_apt=0
for bin in capnp g++ pkg-config; do command -v "$bin" >/dev/null 2>&1 || need_apt=1; done
pkg-config --exists capnp-rpc 2>/dev/null || need_apt=1
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq capnproto libcapnp-dev g++ pkg-config >/dev/null
fi
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version | cut -d. -f1)" != "9" ]; then
  npm install -g pnpm@9.15.9 >/dev/null 2>&1 || corepack enable pnpm
fi
pnpm install --frozen-lockfile
