"""Nanoseconds per packet through a Service VIP, against pod-to-pod in the same run:

  (v1) new connections to one ClusterIP with 1, 100 and 1,000 ready backends: the
       service mapper's lookup and Maglev slot are O(1) in backends;
  (v2) new connections to random ClusterIPs of 10,000 Services (5 backends each):
       O(1) in Services too;
  baseline: new connections pod to pod in the same cluster (no translation);
  (v3) established packets through a VIP (translated both ways) against established
       pod-to-pod packets, the same number of connections.

Every figure prints the verdict mix of the packets it timed (all "new" or all
"established", or it says otherwise). One core, batches of 256, no policies (the
policy cost is fastpath_bench's subject).

    python bench/services_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import (BATCH, SECOND, frames_of, mix, mix_text, new_pipeline,  # noqa: E402
                            reasons, run_all, tcp_frame)

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402
from pipeline.model.cluster import Cluster  # noqa: E402
from pipeline.model.objects import Namespace, Pod, Service, ServicePort  # noqa: E402


def cluster_with(services: int, backends: int, clients: int = 64) -> Cluster:
    """`services` ClusterIPs (198.19.0.0/17) on TCP/80, each selecting `backends` pods
    serving 8080; `clients` pods of their own. Addresses in 198.18.0.0/15 only."""
    c = Cluster()
    c.add_namespace(Namespace("b"))
    hosts = ipaddress.ip_network("198.18.0.0/16").hosts()
    for i in range(clients):
        c.add_pod(Pod("b", f"client-{i}", {"app": "client"}, ips=(next(hosts),)))
    for s in range(services):
        for j in range(backends):
            c.add_pod(Pod("b", f"s{s}-b{j}", {"svc": f"s{s}"}, ips=(next(hosts),)))
        vip = ipaddress.ip_address("198.19.0.1") + s
        c.add_service(Service("b", f"s{s}", {"svc": f"s{s}"}, (ServicePort(80, "TCP", None, 8080),), (vip,)))
    return c


def clients_of(compiled):
    plane = compiled.cluster.plane
    return [(str(plane.address(a)), a.port) for a in plane.attachments() if a.pod.startswith("b/client-")]


def time_new(compiled, flows, reps, baseline=None):
    """SYNs of distinct new connections, each rep on a fresh pipeline; median s/packet
    and the verdict mix. With `baseline` (flows of the same count), its reps alternate
    with these, so that the machine's moods fall on both alike: ((t, mix), (t, mix))."""
    sets = [flows] + ([baseline] if baseline is not None else [])
    frs = [frames_of([(tcp_frame(src, dst, sport, dport, 0x02), port) for src, port, dst, sport, dport in f])
           for f in sets]
    res = ffi.new("struct ns_result[]", BATCH)
    times, mixes = [[] for _ in frs], [{} for _ in frs]
    for _ in range(reps):
        for i, fr in enumerate(frs):
            p = new_pipeline(compiled, connections=max(1 << 16, 2 * fr.n))
            before = reasons(p)
            times[i].append(run_all(p, fr, SECOND, res) / fr.n)
            mixes[i] = mix(before, reasons(p))
            lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)    # the tables stay with `compiled`
    out = [(sorted(t)[len(t) // 2], m) for t, m in zip(times, mixes)]
    return out[0] if baseline is None else tuple(out)


def new_flows(rnd, clients, dsts, n):
    """n distinct tuples (client, source port) to random destinations, port 80."""
    assert n <= len(clients) * 60000
    out = []
    for i in range(n):
        src, port = clients[i % len(clients)]
        out.append((src, port, rnd.choice(dsts), 1024 + i // len(clients), 80))
    return out


def bench_backends(args, rnd, backends):
    compiled = compile_cluster(cluster_with(1, backends))
    clients = clients_of(compiled)
    vip_flows = new_flows(rnd, clients, ["198.19.0.1"], args.packets)
    pods = [str(compiled.cluster.plane.address(a)) for a in compiled.cluster.plane.attachments()
            if a.pod.startswith("b/s0-")]
    pod_flows = [(s, p, rnd.choice(pods), sp, 8080) for s, p, _, sp, _ in vip_flows]
    (t_vip, m_vip), (t_pod, m_pod) = time_new(compiled, vip_flows, 2 * args.reps, pod_flows)
    return {"backends": backends, "vip_new_ns": round(t_vip * 1e9, 1), "vip_mix": m_vip,
            "pod_new_ns": round(t_pod * 1e9, 1), "pod_mix": m_pod, "ratio": round(t_vip / t_pod, 2)}


def bench_many_services(args, rnd, services):
    t0 = time.perf_counter()
    compiled = compile_cluster(cluster_with(services, 5))
    build = time.perf_counter() - t0
    clients = clients_of(compiled)
    vips = [str(ipaddress.ip_address("198.19.0.1") + s) for s in range(services)]
    flows = new_flows(rnd, clients, vips, args.packets)
    # The baseline in the same cluster: the same clients to random backend pods.
    pods = [str(compiled.cluster.plane.address(a)) for a in compiled.cluster.plane.attachments()
            if not a.pod.startswith("b/client-")]
    (t, m), (t_pod, m_pod) = time_new(compiled, flows, 2 * args.reps,
                                      [(s, p, rnd.choice(pods), sp, 8080) for s, p, _, sp, _ in flows])
    return {"services": services, "vip_new_ns": round(t * 1e9, 1), "mix": m, "compile_s": round(build, 1),
            "pod_new_ns": round(t_pod * 1e9, 1), "pod_mix": m_pod, "ratio": round(t / t_pod, 2),
            "frontends": compiled.stats()["frontends"], "backends": compiled.stats()["backends"]}


def bench_established(args, rnd):
    """The same number of connections to a VIP and to pods; then their ACKs."""
    compiled = compile_cluster(cluster_with(1, 100))
    plane = compiled.cluster.plane
    clients = clients_of(compiled)
    n = min(args.packets, 60000)
    res = ffi.new("struct ns_result[]", BATCH)
    ready = {}
    for kind in ("pod", "vip"):
        p = new_pipeline(compiled)
        syns, acks = [], []
        for i in range(n):
            src, port = clients[i % len(clients)]
            sport = 1024 + i
            if kind == "vip":
                syns.append((tcp_frame(src, "198.19.0.1", sport, 80, 0x02), port))
                acks.append((tcp_frame(src, "198.19.0.1", sport, 80, 0x10), port))
            else:
                dst = str(plane.address(plane.attachments()[64 + i % 100]))
                syns.append((tcp_frame(src, dst, sport, 8080, 0x02), port))
                acks.append((tcp_frame(src, dst, sport, 8080, 0x10), port))
        run_all(p, frames_of(syns), SECOND, res)
        # The SYN+ACK comes from whichever backend each connection got: a second
        # pipeline on the same tables makes the same choice and says which.
        replies = []
        fr = frames_of(syns)
        q = new_pipeline(compiled)
        for i in range(0, fr.n, BATCH):
            k = min(BATCH, fr.n - i)
            lib.ns_pipeline_run(q, fr._buf, fr._off + i, fr._len + i, fr._port + i, k, SECOND, res)
            for j in range(k):
                r = res[j]
                dst = str(ipaddress.ip_address(bytes(r.dst)[12:]))
                src_ip = syns[i + j][0][26:30]
                replies.append((tcp_frame(dst, str(ipaddress.ip_address(src_ip)), r.dport, 1024 + i + j, 0x12),
                                r.out_port))
        lib.ns_pipeline_swap_tables(q, ffi.NULL, 0, ffi.NULL)
        run_all(p, frames_of(replies), SECOND, res)
        run_all(p, frames_of(acks), SECOND, res)
        idx = [rnd.randrange(n) for _ in range(args.packets)]
        ready[kind] = (p, frames_of([acks[i] for i in idx]), reasons(p))
    # Timed alternately, pod then VIP, so that the machine's moods fall on both alike.
    times = {"pod": [], "vip": []}
    for _ in range(2 * args.reps):
        for kind in ("pod", "vip"):
            p, fr, _ = ready[kind]
            times[kind].append(run_all(p, fr, SECOND + SECOND // 2, res) / fr.n)
    out = {}
    for kind, (p, fr, before) in ready.items():
        out[kind] = (sorted(times[kind])[len(times[kind]) // 2], mix(before, reasons(p)))
        lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
    return {"pod_established_ns": round(out["pod"][0] * 1e9, 1), "pod_mix": out["pod"][1],
            "vip_established_ns": round(out["vip"][0] * 1e9, 1), "vip_mix": out["vip"][1],
            "ratio": round(out["vip"][0] / out["pod"][0], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer packets and Services (a smoke run)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})   # one core, the same one throughout
    args.packets, args.reps = (20_000, 3) if args.quick else (200_000, 5)
    rnd = random.Random(7)
    out = {"backends": [bench_backends(args, rnd, b) for b in (1, 100, 1000)]}
    for r in out["backends"]:
        print(f"(v1) new via VIP, {r['backends']:>5} backends: {r['vip_new_ns']:7.1f} ns/packet "
              f"[{mix_text(r['vip_mix'])}]; pod to pod {r['pod_new_ns']:7.1f} ns [{mix_text(r['pod_mix'])}]; "
              f"ratio {r['ratio']}", flush=True)
    out["services"] = [bench_many_services(args, rnd, s) for s in ((100, 1000) if args.quick else (100, 10000))]
    for r in out["services"]:
        print(f"(v2) new via VIP, {r['services']:>6} Services x 5 backends: {r['vip_new_ns']:7.1f} ns/packet "
              f"[{mix_text(r['mix'])}]; pod to pod {r['pod_new_ns']:7.1f} ns [{mix_text(r['pod_mix'])}]; "
              f"ratio {r['ratio']} (compiled in {r['compile_s']} s)", flush=True)
    e = out["established"] = bench_established(args, rnd)
    print(f"(v3) established via VIP {e['vip_established_ns']} ns/packet [{mix_text(e['vip_mix'])}]; "
          f"pod to pod {e['pod_established_ns']} ns [{mix_text(e['pod_mix'])}]; ratio {e['ratio']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
