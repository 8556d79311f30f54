"""Fixtures for the native fast-path tests: build pipeline._native if it is
missing (nothing is skipped: the module must build), plus small wrappers
around the cffi API that the tests share."""
import importlib
import ipaddress
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _stale():
    """True when a native source is newer than the built module (or none)."""
    import glob
    built = glob.glob(os.path.join(ROOT, "pipeline", "_native*.so"))
    if not built:
        return True
    srcs = glob.glob(os.path.join(ROOT, "native", "*.[ch]"))
    return max(map(os.path.getmtime, srcs)) > min(map(os.path.getmtime, built))


def _load():
    try:
        if _stale():
            raise ImportError("stale")
        return importlib.import_module("pipeline._native")
    except ImportError:
        subprocess.run([sys.executable, os.path.join("native", "build_ffi.py")], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
        importlib.invalidate_caches()
        return importlib.import_module("pipeline._native")


_native = _load()
ffi, lib = _native.ffi, _native.lib

NONE = 0xFFFFFFFF
REASONS = [ffi.string(lib.ns_reason_name(i)).decode() for i in range(lib.ns_reason_count())]
VERDICT = {0: "FORWARD", 1: "DROP", 2: "LOCAL"}
CT = {0: "none", 1: "new", 2: "established", 3: "reply", 4: "related"}
STATE = {i: ffi.string(lib.ns_ct_state_name(i)).decode() for i in range(1, lib.ns_ct_state_count())}
STATE[-1] = None
SEC = 1_000_000_000


def a16(addr):
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return b"\0" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def make_tables(endpoints=(), isolation=None, prefixes=(), class_blocks=(), rules=(),
                limits=None, seal=True, options=None):
    """options: NS_OPT_* bits; by default pod addresses are routed from the uplink
    (most tests send from outside straight to a pod; see test_sanity for the default)."""
    lim = ffi.new("struct ns_table_limits *", limits or {})
    t = lib.ns_tables_new(lim)
    assert t != ffi.NULL
    t = ffi.gc(t, lib.ns_tables_free)
    for e in endpoints:
        if len(e) == 3:                    # a pod: (address, port, identity); its own owner
            addr, port, ident = e
            kind, node, owner = lib.NS_EP_POD, 1, port
        else:                              # (address, kind, port, identity, node, owner)
            addr, kind, port, ident, node, owner = e
        assert lib.ns_tables_add_endpoint(t, 0, a16(addr), kind, port, ident, node, owner) == 0
    opts = lib.NS_OPT_ROUTE_POD_ADDRESSES if options is None else options
    assert lib.ns_tables_set_options(t, opts) == 0
    for ident, mask in (isolation or {}).items():
        assert lib.ns_tables_set_isolation(t, ident, mask) == 0
    for addr, plen, cls in prefixes:
        assert lib.ns_tables_add_prefix(t, a16(addr), plen, cls) == 0
    for cls, blk in class_blocks:
        assert lib.ns_tables_add_class_block(t, cls, blk) == 0
    for r in rules:
        assert lib.ns_tables_add_rule(t, *r) == 0
    if seal:
        assert lib.ns_tables_seal(t) == 0
    return t


class Result(dict):
    __getattr__ = dict.__getitem__


class Pipe:
    """A pipeline plus the Python reference to its current tables (the C side
    borrows them; keeping the cdata alive here keeps them allocated)."""

    def __init__(self, tables=None, connections=0, fragments=0, reclaim=0):
        lim = ffi.new("struct ns_ct_limits *", {"connections": connections,
                                                "fragments": fragments,
                                                "reclaim_per_batch": reclaim})
        p = lib.ns_pipeline_new(lim)
        assert p != ffi.NULL
        self.p = ffi.gc(p, lib.ns_pipeline_free)
        self.tables = None
        if tables is not None:
            self.swap(tables)

    def swap(self, tables, recheck=False):
        deleted = ffi.new("uint32_t *")
        old = lib.ns_pipeline_swap_tables(self.p, tables if tables is not None else ffi.NULL,
                                          int(recheck), deleted)
        assert old == (self.tables if self.tables is not None else ffi.NULL)
        self.tables = tables
        return deleted[0]

    def run(self, frames, now=0):
        """frames: list of (bytes-like or scapy packet, in_port)."""
        raw = [bytes(f) for f, _ in frames]
        n = len(raw)
        buf = b"".join(raw)
        off = ffi.new("uint32_t[]", max(n, 1))
        ln = ffi.new("uint32_t[]", max(n, 1))
        inp = ffi.new("uint16_t[]", max(n, 1))
        pos = 0
        for i, (r, (_, port)) in enumerate(zip(raw, frames)):
            off[i], ln[i], inp[i] = pos, len(r), port
            pos += len(r)
        res = ffi.new("struct ns_result[]", max(n, 1))
        cbuf = ffi.from_buffer(buf) if buf else ffi.new("uint8_t[1]")
        assert lib.ns_pipeline_run(self.p, cbuf, off, ln, inp, n, now, res) == n
        out = []
        for i in range(n):
            r = res[i]
            out.append(Result(verdict=VERDICT[r.verdict], reason=REASONS[r.reason],
                              out_port=r.out_port, ct=CT[r.ct_state],
                              egress_rule=r.egress_rule, ingress_rule=r.ingress_rule,
                              sport=r.sport, dport=r.dport, proto=r.proto, family=r.family,
                              src=bytes(r.src), dst=bytes(r.dst)))
        return out

    def one(self, frame, in_port, now=0):
        return self.run([(frame, in_port)], now)[0]

    def state(self, src, dst, sport, dport, proto, now=0, echo_reply=0):
        return STATE[lib.ns_pipeline_ct_state(self.p, 0, a16(src), a16(dst), sport, dport, proto, echo_reply,
                                              now)]

    def counter(self, name):
        return lib.ns_pipeline_counter(self.p, REASONS.index(name))

    @property
    def connections(self):
        return lib.ns_pipeline_connections(self.p)


# A small cluster: pods A (port 1) and B (port 2), dual stack; X is outside.
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
A6, B6 = "fd00::1", "fd00::2"
X, X6 = "8.8.8.8", "2001:db8::8"
ID_A, ID_B, ID_C = 10, 20, 30
ENDPOINTS = [(A, 1, ID_A), (B, 2, ID_B), (C, 3, ID_C), (A6, 1, ID_A), (B6, 2, ID_B)]


@pytest.fixture
def pipe():
    return Pipe(make_tables(endpoints=ENDPOINTS))

# Explicit MACs: a bare Ether() makes scapy resolve the destination (slow).
from scapy.layers.l2 import Ether  # noqa: E402

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
