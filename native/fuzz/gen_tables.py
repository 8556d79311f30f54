"""Table traces for the libFuzzer harness (docs/testing.md, "libFuzzer on the C
pipeline"): random clusters from the property tests' generator (tests/strategies.py:
Services with NodePorts and ClientIP affinity, policies with ipBlocks and excepts,
cluster-wide policies of both tiers, secondary networks in two domains), each compiled
by the real compiler while a recording proxy stands in for the cffi `lib`. Every
`ns_tables_*` call the compiler makes is written, with its arguments (arrays
included) and its return value, to one binary trace; the C harness replays the
traces at start-up (fuzz_tables.c) instead of running Python.

    python3 native/fuzz/gen_tables.py -n 48 --seed 1 -o native/fuzz/build/tables

A call the trace format does not know fails the generation: a compiler that learns a
new table call must teach it to this file and to fuzz_tables.c together."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import struct
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

MAGIC, VERSION = b"NSTT", 1
LIMIT_FIELDS = ("endpoints", "identities", "rule_keys", "rule_entries", "prefixes", "class_blocks",
                "rules", "frontends", "backends", "maglev_slots", "networks")


def _raw(ffi, arg, n: int) -> bytes:
    """n bytes at a call's pointer argument: bytes as Python passed them, or cffi memory."""
    if isinstance(arg, (bytes, bytearray)):
        assert len(arg) >= n, (len(arg), n)
        return bytes(arg[:n])
    return bytes(ffi.buffer(ffi.cast("uint8_t *", arg), n)) if n else b""


def _encoders(ffi):
    """name -> (op number, args -> payload). The numbers are fuzz_tables.c's FT_* ops;
    `t` (the tables pointer) is never written: a trace builds one table set."""
    P = struct.pack
    a16 = lambda a: _raw(ffi, a, 16)   # noqa: E731
    return {
        "ns_tables_new": (1, lambda lim: P("=11I", *(getattr(lim, f) for f in LIMIT_FIELDS))),
        "ns_tables_add_endpoints": (2, lambda t, n, zones, addrs, kinds, ports, ids, nodes, owners, failed:
                                    P("=I", n) + _raw(ffi, zones, 2 * n) + _raw(ffi, addrs, 16 * n) +
                                    _raw(ffi, kinds, n) + _raw(ffi, ports, 2 * n) + _raw(ffi, ids, 4 * n) +
                                    _raw(ffi, nodes, 2 * n) + _raw(ffi, owners, 4 * n)),
        "ns_tables_add_endpoint": (3, lambda t, zone, a, kind, port, ident, node, owner:
                                   P("=H", zone) + a16(a) + P("=BHIHI", kind, port, ident, node, owner)),
        "ns_tables_set_port_zone": (4, lambda t, port, zone: P("=HH", port, zone)),
        "ns_tables_set_port_network": (5, lambda t, port, net: P("=HH", port, net)),
        "ns_tables_set_routable": (6, lambda t, a, b: P("=HH", a, b)),
        "ns_tables_set_options": (7, lambda t, o: P("=I", o)),
        "ns_tables_set_snat_address": (8, lambda t, a: a16(a)),
        "ns_tables_set_isolation": (9, lambda t, ident, mask: P("=IB", ident, mask)),
        "ns_tables_add_prefix": (10, lambda t, a, plen, cls: a16(a) + P("=BI", plen, cls)),
        "ns_tables_add_class_block": (11, lambda t, cls, blk: P("=II", cls, blk)),
        "ns_tables_add_rule": (12, lambda t, local, d, peer, blk, proto, lo, hi, rid:
                               P("=IBIIBHHI", local, d, peer, blk, proto, lo, hi, rid)),
        "ns_tables_add_frontend": (13, lambda t, zone, a, proto, port, flags, n, baddrs, bports, m, slots:
                                   P("=H", zone) + a16(a) + P("=BHBH", proto, port, flags, n) +
                                   _raw(ffi, baddrs, 16 * n) + _raw(ffi, bports, 2 * n) + P("=H", m) +
                                   _raw(ffi, slots, 2 * m)),
        "ns_tables_set_affinity_timeout": (14, lambda t, zone, a, proto, port, s:
                                           P("=H", zone) + a16(a) + P("=BHI", proto, port, s)),
        "ns_tables_set_rule_action": (15, lambda t, rule, action: P("=IB", rule, action)),
        "ns_tables_set_peer_cells": (16, lambda t, d, cells, dim: P("=BI", d, dim) + _raw(ffi, cells, 4 * dim * dim)),
        "ns_tables_set_block_cells": (17, lambda t, d, cells, dim, classes:
                                      P("=BII", d, dim, classes) + _raw(ffi, cells, 4 * dim * classes)),
        "ns_tables_seal": (18, lambda t: b""),
    }


# What a table set may hold beyond pods and NetworkPolicy, by the call that shows it.
KINDS = {"services": "ns_tables_add_frontend", "networks": "ns_tables_set_port_network",
         "cluster-wide": "ns_tables_set_rule_action"}

# Called by the compiler but building nothing (or freeing): passed through unrecorded.
PASS_THROUGH = {"ns_tables_free", "ns_tables_memory"}


class Recorder:
    """Stands in for cffi's `lib` during one compile: constants and unrecorded calls
    pass through, every table-building call is run for real and written down."""

    def __init__(self, lib, ffi):
        self._lib, self._enc, self.out = lib, _encoders(ffi), bytearray(MAGIC + struct.pack("=I", VERSION))
        self.called: set = set()

    def __getattr__(self, name):
        real = getattr(self._lib, name)
        if not callable(real) or name in PASS_THROUGH:
            return real
        if name not in self._enc:
            raise RuntimeError(f"{name}: the table trace format does not know this call "
                               "(teach it to native/fuzz/gen_tables.py and fuzz_tables.c)")
        op, encode = self._enc[name]

        def call(*args):
            rc = real(*args)
            self.called.add(name)
            payload = encode(*args)
            ret = 0 if name == "ns_tables_new" else int(rc)
            self.out += struct.pack("=BI", op, len(payload)) + payload + struct.pack("=i", ret)
            return rc
        return call


def record(cluster) -> tuple[bytes, set]:
    """The trace of compiling `cluster` (the real compile runs, through the proxy), and
    the KINDS of table it holds."""
    import pipeline._native as native
    from pipeline.dataplane.compiler import compile_cluster
    real = native.lib
    rec = Recorder(real, native.ffi)
    native.lib = rec
    try:
        compile_cluster(cluster)
    finally:
        native.lib = real
    return bytes(rec.out), {kind for kind, call in KINDS.items() if call in rec.called}


class _Enough(Exception):
    pass


def traces(n: int, seed: int) -> list:
    """The traces of n distinct clusters drawn by tests/strategies.py's generator
    (hypothesis, seeded), with the table options (policed node traffic, routed pod
    addresses) drawn too, and the Service's affinity and its timeout drawn again. The
    generator's one Service seldom has a ready backend, and without one no connection
    is translated: two times in three it gets one or two (pods in ns-a labelled app=x
    with every named port, dual stack)."""
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st
    from hypothesis import seed as hseed
    from pipeline.model.objects import Pod
    from tests.strategies import PORTS, clusters as cluster_st

    out: list = []
    have = dict.fromkeys(KINDS, 0)
    drawn = [0]
    seen: set = set()
    sizes = st.sampled_from([(6, 4), (6, 4), (12, 8), (3, 2)])

    @hseed(seed)
    @settings(max_examples=n * 20, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data):
        pods, pols = data.draw(sizes)
        c = data.draw(cluster_st(max_pods=pods, max_policies=pols))
        police, route = data.draw(st.integers(0, 3)) == 0, data.draw(st.integers(0, 3)) == 0
        c.config = dataclasses.replace(c.config, police_node_traffic=police, route_pod_addresses=route)
        for svc in list(c.services.values()):    # (hypothesis draws it alike for long runs)
            affinity = data.draw(st.sampled_from(["None", "ClientIP"]))
            c.add_service(dataclasses.replace(svc, session_affinity=affinity,
                                              affinity_timeout=data.draw(st.sampled_from([1, 10, 10800]))))
        if c.services and data.draw(st.integers(0, 2)):
            for i in range(data.draw(st.integers(1, 2))):
                c.add_pod(Pod("ns-a", f"backend-{i}", {"app": "x"}, tuple(PORTS),
                              ips=(ipaddress.ip_address(f"198.18.0.{200 + i}"),
                                   ipaddress.ip_address(f"2001:db8::{200 + i:x}"))))
        # hypothesis starts with minimal examples, alike and plain: the first are
        # skipped, and a set is kept while it brings a kind a third of the sets lack
        # (Services, secondary networks, cluster-wide policy), or when none is lacking
        drawn[0] += 1
        if len(out) < n and drawn[0] > 20:
            trace, kinds = record(c)
            lacking = {k for k in KINDS if have[k] < n // 3}
            if trace not in seen and (kinds & lacking or not lacking):
                seen.add(trace)
                out.append(trace)
                for k in kinds:
                    have[k] += 1
        if len(out) >= n:             # after the draws, so that a replay draws alike
            raise _Enough()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            draw()
        except _Enough:
            pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=48, help="clusters (table sets)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--out", required=True, help="directory for the NNN.bin traces")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    for old in os.listdir(a.out):
        if old.endswith(".bin"):
            os.unlink(os.path.join(a.out, old))
    got = traces(a.n, a.seed)
    for i, trace in enumerate(got):
        with open(os.path.join(a.out, f"{i:03d}.bin"), "wb") as f:
            f.write(trace)
    print(f"{len(got)} table traces in {a.out}")
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
