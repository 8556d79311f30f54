"""Nanoseconds per packet through the full native pipeline (sanity -> conntrack ->
service mapper -> route -> egress -> ingress -> commit), batches of 256 from one
contiguous buffer, one C call per batch, one core. Every figure measures exactly what
its label says, and the verdict mix of the packets timed is printed beside it:

  (a) established: ACKs of connections whose handshake completed (ESTABLISHED in
      conntrack), 1,000,000 tracked; every packet is "established"
  (b) new, allowed: SYNs of new connections the policies allow, against 10, 1,000 and
      10,000 policies; every packet is "new" (denied SYNs are timed apart)
  (c) ipBlock: new connections from an egress-isolated pod to outside addresses,
      matched against 10 and 100,000 prefixes: allowed ones, then denied ones
  (d) the Python oracle on the same packets as (a) (warm: the same connections
      opened first) and (b), for the ratio
  memory: tables for 1,000,000 connections and 100,000 endpoints

    python bench/fastpath_bench.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from gen_cluster import generate  # noqa: E402

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.load.build import build_cluster  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402
from pipeline.load.manifests import Document, LoadResult, _parse_document  # noqa: E402
from pipeline.dataplane.oracle import OraclePipeline  # noqa: E402

BATCH = 256
SECOND = 1_000_000_000


def cluster_of(docs):
    result, errors = LoadResult(), []
    for i, d in enumerate(docs):
        _parse_document(Document("gen", i, d), result, errors)
    assert not errors, errors[:3]
    return build_cluster(result)


def checksum(h: bytes) -> int:
    s = sum(struct.unpack(f"!{len(h) // 2}H", h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    """Ethernet + IPv4 + TCP, 54 bytes, valid checksums where the pipeline checks."""
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                               ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0)
    return eth + bytes(ip) + tcp


class Frames:
    """Frames in one contiguous buffer, with offsets, lengths and arrival ports."""

    def __init__(self, frames, ports):
        self.n = len(frames)
        self.len = np.array([len(f) for f in frames], dtype=np.uint32)
        self.off = np.zeros(self.n, dtype=np.uint32)
        self.off[1:] = np.cumsum(self.len[:-1], dtype=np.uint64).astype(np.uint32)
        self.buf = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
        self.port = np.array(ports, dtype=np.uint16)
        self._buf = ffi.from_buffer("uint8_t[]", self.buf)
        self._off = ffi.cast("uint32_t *", ffi.from_buffer(self.off))
        self._len = ffi.cast("uint32_t *", ffi.from_buffer(self.len))
        self._port = ffi.cast("uint16_t *", ffi.from_buffer(self.port))
        self.frames, self.ports = frames, ports


def new_pipeline(compiled, connections=1 << 20):
    limits = ffi.new("struct ns_ct_limits *", {"connections": connections})
    p = ffi.gc(lib.ns_pipeline_new(limits), lib.ns_pipeline_free)
    ffi.gc(compiled.tables, None)
    lib.ns_pipeline_swap_tables(p, compiled.tables, 0, ffi.NULL)
    return p


def run_all(p, fr: Frames, now: int, res) -> float:
    """Runs every frame once in batches; returns seconds."""
    t0 = time.perf_counter()
    for i in range(0, fr.n, BATCH):
        lib.ns_pipeline_run(p, fr._buf, fr._off + i, fr._len + i, fr._port + i, min(BATCH, fr.n - i), now, res)
    return time.perf_counter() - t0


def new_batches(p, fr: Frames, res):
    """A function running the next batch of `fr` (distinct new connections) each call;
    at the end of the frames the clock jumps past every timeout, so each packet is
    new again."""
    state = {"i": 0, "now": SECOND}

    def one_batch():
        i = state["i"]
        if i + BATCH > fr.n:
            state["i"], state["now"] = 0, state["now"] + 100 * SECOND
            i = 0
        state["i"] += BATCH
        lib.ns_pipeline_run(p, fr._buf, fr._off + i, fr._len + i, fr._port + i, BATCH, state["now"], res)
    return one_batch


def reasons(p) -> dict:
    out = {}
    for i in range(lib.ns_reason_count()):
        c = lib.ns_pipeline_counter(p, i)
        if c:
            out[ffi.string(lib.ns_reason_name(i)).decode()] = c
    return out


def mix(before: dict, after: dict) -> dict:
    """Packets per reason between two counter readings."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def mix_text(m: dict) -> str:
    total = sum(m.values()) or 1
    return ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(m.items(), key=lambda kv: -kv[1]))


def pod_pairs(compiled, rnd, n):
    plane = compiled.cluster.plane
    pods = plane.attachments()
    out = []
    for _ in range(n):
        a, b = rnd.choice(pods), rnd.choice(pods)
        out.append((str(plane.address(a)), str(plane.address(b)), a.port, b.port))
    return out


def verdicts_of(compiled, frames: Frames) -> list[str]:
    """What a fresh pipeline says of each frame (to pick allowed or denied ones)."""
    p = new_pipeline(compiled, connections=max(16, frames.n * 2))
    res = ffi.new("struct ns_result[]", BATCH)
    out = []
    for i in range(0, frames.n, BATCH):
        n = min(BATCH, frames.n - i)
        lib.ns_pipeline_run(p, frames._buf, frames._off + i, frames._len + i, frames._port + i, n, SECOND, res)
        out += [ffi.string(lib.ns_reason_name(res[j].reason)).decode() for j in range(n)]
    lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)    # the tables stay with `compiled`
    return out


def handshakes(pairs):
    """SYN, SYN+ACK, ACK of each pair's connection, and the ACK alone."""
    syn, synack, ack = [], [], []
    for i, (a, b, pa, pb) in enumerate(pairs):
        sport, dport = 1024 + (i % 60000), 80 + i // 60000
        syn.append((tcp_frame(a, b, sport, dport, 0x02), pa))
        synack.append((tcp_frame(b, a, dport, sport, 0x12), pb))
        ack.append((tcp_frame(a, b, sport, dport, 0x10), pa))
    return syn, synack, ack


def frames_of(lst):
    return Frames([f for f, _ in lst], [p for _, p in lst])


def bench_established(args, rnd):
    cl = cluster_of(generate(pods=1000, namespaces=50, policies=10))
    compiled = compile_cluster(cl)
    n = args.connections
    pairs = pod_pairs(compiled, rnd, n)
    syn, synack, ack = handshakes(pairs)
    # Only connections the policies allow: the figure is about established packets.
    allowed = [i for i, r in enumerate(verdicts_of(compiled, frames_of(syn))) if r == "new"]
    syn, synack, ack = ([lst[i] for i in allowed] for lst in (syn, synack, ack))
    p = new_pipeline(compiled)
    res = ffi.new("struct ns_result[]", BATCH)
    t_open = run_all(p, frames_of(syn), SECOND, res)
    run_all(p, frames_of(synack), SECOND, res)
    run_all(p, frames_of(ack), SECOND, res)
    opened = lib.ns_pipeline_connections(p)
    # Established traffic: ACKs of random open connections (orig direction).
    idx = [rnd.randrange(len(ack)) for _ in range(args.packets)]
    fr = frames_of([ack[i] for i in idx])
    before = reasons(p)
    # Busy connections: each packet within a second of the connection's last one,
    # the common case (the entry is only re-stamped).
    times = [run_all(p, fr, SECOND + SECOND // 2, res) for _ in range(args.reps)]
    busy = mix(before, reasons(p))
    # Idle connections: every packet's connection was quiet for >= 1 s, so each one
    # also moves its entry to the FIFO tail (the worst case of the refresh).
    before = reasons(p)
    idle = [run_all(p, fr, (3 + 2 * rep) * SECOND, res) for rep in range(args.reps)]
    t, t_idle = sorted(times)[len(times) // 2], sorted(idle)[len(idle) // 2]
    return {"connections_tracked": opened, "open_ns_per_packet": round(t_open / len(syn) * 1e9, 1),
            "ns_per_packet": round(t / fr.n * 1e9, 1), "mpps": round(fr.n / t / 1e6, 2),
            "idle_ns_per_packet": round(t_idle / fr.n * 1e9, 1), "mix": busy,
            "idle_mix": mix(before, reasons(p)),
            "memory_bytes": int(lib.ns_pipeline_memory(p) + lib.ns_tables_memory(compiled.tables)),
            "entry_bytes": lib.ns_ct_entry_size()}, (cl, syn, synack, fr)


def bench_new(args, rnd, policies):
    t0 = time.perf_counter()
    cl = cluster_of(generate(pods=args.pods, namespaces=50, policies=policies, seed=3))
    compiled = compile_cluster(cl)
    t_compile = time.perf_counter() - t0
    pairs = pod_pairs(compiled, rnd, args.packets * 3)
    syn = [(tcp_frame(a, b, 1024 + i % 60000, 80 + i // 60000, 0x02), pa) for i, (a, b, pa, _) in enumerate(pairs)]
    verdicts = verdicts_of(compiled, frames_of(syn))
    by = {"new": [f for f, r in zip(syn, verdicts) if r == "new"][:args.packets],
          "denied": [f for f, r in zip(syn, verdicts) if r.startswith("denied")][:args.packets]}
    res = ffi.new("struct ns_result[]", BATCH)
    out = {"policies": policies, "pods": args.pods, "identities": len(compiled.identities),
           "rule_keys": len(compiled.policy.entries), "rule_entries": compiled.policy.n_entries,
           "compile_s": round(t_compile, 2),
           "allowed_fraction_of_random_pairs": round(verdicts.count("new") / len(verdicts), 3)}
    tables = compiled.tables
    for kind, frames in by.items():
        if not frames:
            continue
        fr = frames_of(frames)
        times, m = [], {}
        for rep in range(args.reps):
            compiled.tables = tables
            p = new_pipeline(compiled)
            before = reasons(p)
            times.append(run_all(p, fr, SECOND, res))
            m = mix(before, reasons(p))
            lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)    # keep the tables for the next rep
        t = sorted(times)[len(times) // 2]
        out[kind] = {"ns_per_packet": round(t / fr.n * 1e9, 1), "mpps": round(fr.n / t / 1e6, 2), "mix": m}
    compiled.tables = tables
    return out, (cl, frames_of(by["new"]))


def bench_ipblock(args, rnd, prefixes):
    """One pod isolated for egress, allowed to `prefixes` random /16../32 blocks."""
    nets = set()
    while len(nets) < prefixes:
        plen = rnd.choice([16, 20, 24, 28, 32])
        addr = ipaddress.IPv4Address(rnd.randrange(1 << 32))
        nets.add(ipaddress.ip_network(f"{addr}/{plen}", strict=False))
    nets = sorted(nets, key=lambda n: (n.network_address, n.prefixlen))
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "a"},
             "status": {"podIP": "198.18.0.1"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "egress", "namespace": "a"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"ipBlock": {"cidr": str(n)}} for n in nets]}]}}]
    t0 = time.perf_counter()
    compiled = compile_cluster(cluster_of(docs))
    t_compile = time.perf_counter() - t0
    dsts = [str(rnd.choice(nets).network_address + (rnd.randrange(2) if rnd.random() < 0.5 else 0))
            if rnd.random() < 0.5 else str(ipaddress.IPv4Address(rnd.randrange(1 << 32)))
            for _ in range(args.packets * 2)]
    dsts = [d if not ipaddress.ip_address(d).is_multicast and not d.startswith(("0.", "127.", "169.254.", "255."))
            else "198.19.0.1" for d in dsts]
    syn = [(tcp_frame("198.18.0.1", d, 1024 + i % 60000, 443, 0x02), 1) for i, d in enumerate(dsts)]
    verdicts = verdicts_of(compiled, frames_of(syn))
    res = ffi.new("struct ns_result[]", BATCH)
    out = {"prefixes": prefixes, "compile_s": round(t_compile, 2),
           "tables_bytes": int(lib.ns_tables_memory(compiled.tables))}
    p = new_pipeline(compiled)
    for kind, want in (("allowed", "new"), ("denied", "denied_egress")):
        fr = frames_of([f for f, r in zip(syn, verdicts) if r == want][:args.packets])
        times, m = [], {}
        for rep in range(args.reps):
            before = reasons(p)
            times.append(run_all(p, fr, (10 + rep * 100) * SECOND, res))   # each rep after the last expired
            m = mix(before, reasons(p))
        t = sorted(times)[len(times) // 2]
        out[kind] = {"ns_per_packet": round(t / fr.n * 1e9, 1), "mpps": round(fr.n / t / 1e6, 2), "mix": m}
    return out


def bench_oracle(cl, packets: Frames, n: int, now: int, warm=()):
    """us/packet of the oracle on the first n packets, after running `warm` (lists of
    (frame, port)) at now - 1 s to open the same connections; and the verdict mix."""
    o = OraclePipeline(cl)
    for lst in warm:
        for f, port in lst:
            o.process(f, port, now - SECOND)
    got = {}
    t0 = time.perf_counter()
    for f, port in zip(packets.frames[:n], packets.ports[:n]):
        r = o.process(f, port, now)
        got[r.reason] = got.get(r.reason, 0) + 1
    return (time.perf_counter() - t0) / n * 1e9, got


def bench_memory():
    """Tables for 1,000,000 connections and 100,000 endpoints."""
    limits = ffi.new("struct ns_table_limits *", {"endpoints": 100_000, "identities": 100_000, "rule_keys": 1024,
                                                   "rule_entries": 1024, "prefixes": 1024, "class_blocks": 1024})
    t = ffi.gc(lib.ns_tables_new(limits), lib.ns_tables_free)
    for i in range(100_000):
        a = b"\x00" * 10 + b"\xff\xff" + struct.pack("!I", (198 << 24) | (18 << 16) + i)
        assert lib.ns_tables_add_endpoint(t, 0, a, lib.NS_EP_POD, 1 + i % 60000, 1 + i % 1000, 1, 1 + i) == 0
    assert lib.ns_tables_seal(t) == 0
    ct = ffi.new("struct ns_ct_limits *", {"connections": 1_000_000})
    p = ffi.gc(lib.ns_pipeline_new(ct), lib.ns_pipeline_free)
    return {"tables_bytes": int(lib.ns_tables_memory(t)), "pipeline_bytes": int(lib.ns_pipeline_memory(p)),
            "total_mb": round((lib.ns_tables_memory(t) + lib.ns_pipeline_memory(p)) / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    args.connections = 100_000 if args.quick else 1_000_000
    args.packets = 50_000 if args.quick else 262_144
    args.pods = 1000
    rnd = random.Random(11)
    out = {}
    est, (cl_a, syn_a, synack_a, fr_a) = bench_established(args, rnd)
    out["established"] = est
    print(f"(a) established, {est['connections_tracked']:,} tracked: {est['ns_per_packet']} ns/packet "
          f"({est['mpps']} Mpps) on busy connections [{mix_text(est['mix'])}], {est['idle_ns_per_packet']} "
          f"ns/packet when every connection was idle >= 1 s [{mix_text(est['idle_mix'])}]; entry "
          f"{est['entry_bytes']} B; opening them: {est['open_ns_per_packet']} ns/SYN")
    out["new"] = []
    for n in ([10, 1000] if args.quick else [10, 1000, 10000]):
        r, (cl_b, fr_b) = bench_new(args, rnd, n)
        out["new"].append(r)
        d = r.get("denied")
        print(f"(b) new connections, {n:>6} policies: allowed {r['new']['ns_per_packet']} ns/packet "
              f"({r['new']['mpps']} Mpps) [{mix_text(r['new']['mix'])}]"
              + (f"; denied {d['ns_per_packet']} ns/packet [{mix_text(d['mix'])}]" if d else "")
              + f"; {r['identities']} identities, {r['rule_entries']:,} rule entries, compiled in {r['compile_s']} s")
    ratio = out["new"][-1]["new"]["ns_per_packet"] / out["new"][0]["new"]["ns_per_packet"]
    out["new_ratio_max_vs_10"] = round(ratio, 2)
    print(f"    allowed new connections, {out['new'][-1]['policies']} vs 10 policies: {ratio:.2f}x")
    out["ipblock"] = []
    for n in ([10, 10_000] if args.quick else [10, 100_000]):
        r = bench_ipblock(args, rnd, n)
        out["ipblock"].append(r)
        print(f"(c) ipBlock, {n:>7,} prefixes: allowed {r['allowed']['ns_per_packet']} ns/packet "
              f"[{mix_text(r['allowed']['mix'])}], denied {r['denied']['ns_per_packet']} ns/packet "
              f"[{mix_text(r['denied']['mix'])}]; tables {r['tables_bytes'] / 2**20:.1f} MB, compiled in "
              f"{r['compile_s']} s")
    n_or = 2000
    o_est, m_est = bench_oracle(cl_a, fr_a, n_or, 2 * SECOND, warm=(syn_a, synack_a))
    o_new, m_new = bench_oracle(cl_b, fr_b, n_or, SECOND)
    out["oracle"] = {"established_ns_per_packet": round(o_est), "new_ns_per_packet": round(o_new),
                     "established_mix": m_est, "new_mix": m_new,
                     "ratio_established": round(o_est / est["ns_per_packet"]),
                     "ratio_new": round(o_new / out["new"][-1]["new"]["ns_per_packet"])}
    print(f"(d) Python oracle: {o_est / 1000:.1f} us/packet established, warm [{mix_text(m_est)}] "
          f"({out['oracle']['ratio_established']}x native); {o_new / 1000:.0f} us/packet new, allowed, "
          f"{out['new'][-1]['policies']} policies [{mix_text(m_new)}] ({out['oracle']['ratio_new']}x native)")
    mem = bench_memory()
    out["memory"] = mem
    print(f"memory: 1,000,000 connections + 100,000 endpoints: {mem['total_mb']} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
