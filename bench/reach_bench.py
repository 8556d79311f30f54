"""Times `netsem reach` on a generated cluster (default 1,000 pods, 50 namespaces, 500
policies, TCP/80): the matrix computation alone, the JSON streaming, and, as the
baseline measured in the same run, the readable pair-by-pair primitive
(open_pod_connection) on a sample of pairs, extrapolated to the whole matrix.

    python bench/reach_bench.py [--pods N --namespaces M --policies P] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from gen_cluster import generate  # noqa: E402

from pipeline.load.build import build_cluster  # noqa: E402
from pipeline.model.connections import Connections, open_pod_connection  # noqa: E402
from pipeline.load.manifests import Document, LoadResult, _parse_document  # noqa: E402
from pipeline.model.reach import ReachComputer  # noqa: E402
from pipeline.cli.render import stream_matrix_json  # noqa: E402


def build(pods, namespaces, policies):
    result, errors = LoadResult(), []
    for i, d in enumerate(generate(pods, namespaces, policies)):
        _parse_document(Document("gen", i, d), result, errors)
    assert not errors, errors[:3]
    return build_cluster(result)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--policies", type=int, default=500)
    ap.add_argument("--sample", type=int, default=2000, help="pairs timed for the baseline")
    ap.add_argument("--json", help="write the results here as JSON")
    a = ap.parse_args()

    t0 = time.perf_counter()
    cluster = build(a.pods, a.namespaces, a.policies)
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    m = ReachComputer(cluster).matrix("TCP", 80)
    t_matrix = time.perf_counter() - t0

    sink = io.StringIO()
    t0 = time.perf_counter()
    stream_matrix_json([m], sink)
    t_json = time.perf_counter() - t0

    rnd = random.Random(7)
    pods = m.pods
    pairs = [(rnd.randrange(len(pods)), rnd.randrange(len(pods))) for _ in range(a.sample)]
    t0 = time.perf_counter()
    mismatches = 0
    for i, j in pairs:
        v = open_pod_connection(cluster, Connections(), pods[i], pods[j], "TCP", 80)
        mismatches += v.allowed != bool(m.allowed[i, j])
    t_pair = (time.perf_counter() - t0) / a.sample
    cells = len(pods) ** 2
    res = {
        "pods": len(pods), "namespaces": a.namespaces, "policies": a.policies, "cells": cells,
        "build_cluster_s": round(t_load, 3), "matrix_s": round(t_matrix, 3),
        "json_stream_s": round(t_json, 3), "json_bytes": sink.tell(),
        "baseline_pairwise_us_per_cell": round(t_pair * 1e6, 1),
        "baseline_pairwise_extrapolated_s": round(t_pair * cells, 1),
        "speedup_vs_pairwise": round(t_pair * cells / t_matrix, 1),
        "allowed_fraction": round(float(m.allowed.mean()), 4),
        "sample_mismatches": mismatches,
    }
    print(f"cluster: {res['pods']} pods, {a.namespaces} namespaces, {a.policies} policies "
          f"(built in {res['build_cluster_s']} s)")
    print(f"matrix TCP/80 ({cells:,} cells):       {res['matrix_s']:.3f} s   target < 5 s")
    print(f"JSON streamed ({res['json_bytes'] / 1e6:.0f} MB):          {res['json_stream_s']:.3f} s")
    print(f"baseline, pair by pair (oracle):   {res['baseline_pairwise_us_per_cell']} us/cell -> "
          f"{res['baseline_pairwise_extrapolated_s']} s for the matrix ({res['speedup_vs_pairwise']}x slower)")
    print(f"sampled cells that disagree with the oracle: {mismatches} of {a.sample}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
