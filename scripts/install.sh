#!/bin/sh
# Installs netsem and everything it needs on a fresh Debian/Ubuntu machine (as root):
# a C compiler for the cffi module (and the benchmark's generators), iproute2, iperf3,
# iptables and nftables for the soft switch and its benchmarks, libxdp for the AF_XDP
# experiment (bench/gen/xdpfwd.c), and the Python
# package with its test extras.
set -eu
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    need=""
    for pkg in gcc libc6-dev python3-dev python3-pip iproute2 iperf3 procps iptables nftables clang libclang-rt-14-dev valgrind libxdp-dev libbpf-dev; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
    done
    if [ -n "$need" ]; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $need >/dev/null
    fi
fi
PY=${PYTHON:-python3}
# Debian's system Python refuses pip installs without this (PEP 668); harmless elsewhere.
export PIP_BREAK_SYSTEM_PACKAGES=1
"$PY" -m pip install -q --upgrade "pip>=23" "setuptools>=64" wheel cffi
"$PY" -m pip install -q -e '.[test]'
