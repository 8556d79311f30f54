"""New connections through the policy tiers (issue 11), in memory, one core: the
generated 10,000-NetworkPolicy cluster of fastpath_bench.py (1,000 pods, 50
namespaces) with 0, 10 and 100 AdminNetworkPolicies and a BaselineAdminNetworkPolicy,
the same SYNs through each: only pairs every configuration allows, so each figure is
"allowed new connection" (the verdict mix is printed beside it).

The AdminNetworkPolicies (generated, seed fixed) each select the namespaces of one
team, with rules of every action: Allow on 443 from one namespace, Pass on 80 (the
traffic's port) from the namespaces of one environment, Deny on 9000-9100 from all;
the baseline denies 9000-9100 too. So a SYN to port 80 meets the Admin tier (a Pass,
or no match), then NetworkPolicy, then for pods no NetworkPolicy selects the Baseline
tier. Ratios are to the 0-ANP run of the same process.

    python bench/admin_bench.py [--quick] [--reps 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import (BATCH, SECOND, frames_of, mix, mix_text, new_pipeline, pod_pairs, reasons,  # noqa: E402
                            run_all, tcp_frame, verdicts_of)
from gen_cluster import generate  # noqa: E402

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402
from pipeline.load.build import build_cluster  # noqa: E402
from pipeline.load.manifests import Document, parse_documents  # noqa: E402


def admin_policies(n: int, rnd: random.Random) -> list[dict]:
    docs = []
    for i in range(n):
        docs.append({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
                     "metadata": {"name": f"anp-{i:03d}"},
                     "spec": {"priority": i, "subject": {"namespaces": {"matchLabels": {"team": f"team-{i % 5}"}}},
                              "ingress": [
                                  {"name": "allow-443", "action": "Allow",
                                   "from": [{"namespaces": {"matchLabels": {
                                       "kubernetes.io/metadata.name": f"ns-{rnd.randrange(50):02d}"}}}],
                                   "ports": [{"portNumber": {"protocol": "TCP", "port": 443}}]},
                                  {"name": "pass-80", "action": "Pass",
                                   "from": [{"namespaces": {"matchLabels": {"env": rnd.choice(["prod", "dev"])}}}],
                                   "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]},
                                  {"name": "deny-high", "action": "Deny", "from": [{"namespaces": {}}],
                                   "ports": [{"portRange": {"protocol": "TCP", "start": 9000, "end": 9100}}]}],
                              "egress": [
                                  {"name": "deny-high", "action": "Deny", "to": [{"namespaces": {}}],
                                   "ports": [{"portRange": {"protocol": "TCP", "start": 9000, "end": 9100}}]}]}})
    if n:
        docs.append({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
                     "metadata": {"name": "default"},
                     "spec": {"subject": {"namespaces": {}},
                              "ingress": [{"name": "deny-high", "action": "Deny", "from": [{"namespaces": {}}],
                                           "ports": [{"portRange": {"protocol": "TCP", "start": 9000,
                                                                    "end": 9100}}]}]}})
    return docs


def cluster(base: list[dict], anps: int, rnd: random.Random):
    docs = base + admin_policies(anps, rnd)
    return build_cluster(parse_documents([Document("bench", i, d) for i, d in enumerate(docs)]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 policies and fewer packets (a smoke run)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    nps = 1000 if args.quick else 10000
    packets = 50_000 if args.quick else 262_144
    base = generate(pods=1000, namespaces=50, policies=nps, seed=3)
    configs = []
    for anps in (0, 10, 100):
        t0 = time.perf_counter()
        cl = cluster(base, anps, random.Random(5))
        compiled = compile_cluster(cl)
        configs.append((anps, cl, compiled, time.perf_counter() - t0))
    # SYNs to port 80 between random pairs, kept where every configuration allows them.
    rnd = random.Random(11)
    pairs = pod_pairs(configs[0][2], rnd, packets * 4)
    syn = [(tcp_frame(a, b, 1024 + i % 60000, 80, 0x02), pa) for i, (a, b, pa, _) in enumerate(pairs)]
    keep = [all(v == "new" for v in vs) for vs in zip(*(verdicts_of(c, frames_of(syn)) for _, _, c, _ in configs))]
    frames = [f for f, k in zip(syn, keep) if k][:packets]
    fr = frames_of(frames)
    res = ffi.new("struct ns_result[]", BATCH)
    out = {"network_policies": nps, "pods": 1000, "packets": fr.n, "runs": []}
    base_ns = None
    for anps, cl, compiled, t_compile in configs:
        tables, times, m = compiled.tables, [], {}
        for _ in range(args.reps):
            compiled.tables = tables
            p = new_pipeline(compiled)
            before = reasons(p)
            times.append(run_all(p, fr, SECOND, res))
            m = mix(before, reasons(p))
            lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
        compiled.tables = tables
        ns = sorted(times)[len(times) // 2] / fr.n * 1e9
        base_ns = base_ns or ns
        r = {"admin_network_policies": anps, "ns_per_packet": round(ns, 1), "ratio_to_0": round(ns / base_ns, 2),
             "mix": m, "compile_s": round(t_compile, 2), "rule_keys": len(compiled.policy.entries),
             "tables_mb": round(lib.ns_tables_memory(tables) / 2**20, 1)}
        out["runs"].append(r)
        print(f"{nps} NetworkPolicies + {anps:>3} AdminNetworkPolicies{' + a baseline' if anps else ''}: allowed "
              f"new connection {r['ns_per_packet']} ns/packet ({r['ratio_to_0']}x the 0-ANP run) "
              f"[{mix_text(m)}]; compiled in {r['compile_s']} s, {r['rule_keys']:,} rule keys, "
              f"{r['tables_mb']} MB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
