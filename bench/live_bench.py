"""A live cluster's costs (issue 10), each against its target, measured as the code
does it today (every change rebuilds the model and recompiles every table):

  (l1) a full load and compile of a generated cluster: 10,000 pods, 1,000 policies
       (target < 1 s), with the tables' memory and entry counts;
  (l2) event-to-installed latency: label changes arriving at a steady rate (100 a
       second by default) on a smaller generated cluster, each applied through
       LiveCluster (the loader), compiled and installed into a running Datapath;
       p50/p99 of (installed - arrived), and whether the rate was kept up with.

    python bench/live_bench.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from gen_cluster import generate  # noqa: E402

from pipeline._native import lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402
from pipeline.dataplane.driver import Datapath  # noqa: E402
from pipeline.load.live import LiveCluster  # noqa: E402


def full_compile(pods: int, policies: int) -> dict:
    docs = generate(pods=pods, namespaces=100, policies=policies)
    t0 = time.perf_counter()
    live = LiveCluster()
    live.load(docs)
    t1 = time.perf_counter()
    compiled = compile_cluster(live.cluster)
    t2 = time.perf_counter()
    return {"pods": pods, "policies": policies, "load_s": round(t1 - t0, 2), "compile_s": round(t2 - t1, 2),
            "tables_mb": round(lib.ns_tables_memory(compiled.tables) / 2**20, 1), **compiled.stats()}


def latency(pods: int, policies: int, rate: float, events: int, rnd: random.Random) -> dict:
    """Events arrive on a schedule; the follower, as `netsem up --kubeconfig` does,
    takes every event that has arrived, applies them in one build, compiles and
    installs, and starts again."""
    docs = generate(pods=pods, namespaces=20, policies=policies)
    live = LiveCluster()
    live.load(docs)
    dp = Datapath()
    dp.install(compile_cluster(live.cluster))
    pod_docs = [d for d in docs if d["kind"] == "Pod"]
    changes = []
    for _ in range(events):
        d = copy.deepcopy(rnd.choice(pod_docs))
        d["metadata"]["labels"]["tier"] = rnd.choice(["web", "api", "db"])
        changes.append(("MODIFIED", d))
    start = time.perf_counter()
    arrival = [start + i / rate for i in range(events)]
    lat, builds, service, i = [], 0, [], 0
    while i < events:
        now = time.perf_counter()
        if now < arrival[i]:
            time.sleep(arrival[i] - now)
            now = time.perf_counter()
        j = i
        while j < events and arrival[j] <= now:
            j += 1
        t0 = time.perf_counter()
        applied = live.apply_many(changes[i:j])
        assert not any(a.rejected for a in applied)
        dp.install(compile_cluster(live.cluster))
        done = time.perf_counter()
        service.append(done - t0)
        builds += 1
        lat += [done - arrival[k] for k in range(i, j)]
        i = j
    lat.sort()
    service.sort()
    return {"pods": pods, "policies": policies, "rate": rate, "events": events, "builds": builds,
            "p50_ms": round(lat[len(lat) // 2] * 1e3, 1), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 1),
            "build_ms_median": round(service[len(service) // 2] * 1e3, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller clusters (a smoke run)")
    ap.add_argument("--rate", type=float, default=100.0, help="events a second for (l2) (default 100)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--skip-full", action="store_true", help="only (l2)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    rnd = random.Random(3)
    out = {}
    big = (1000, 100) if args.quick else (10000, 1000)
    r = out["full"] = full_compile(*big) if not args.skip_full else None
    if r:
        print(f"(l1) {r['pods']} pods, {r['policies']} policies: load {r['load_s']} s, compile {r['compile_s']} s "
              f"(target < 1 s); tables {r['tables_mb']} MB, {r['rule_keys']} rule keys, {r['rule_entries']} "
              f"entries, {r['identities']} identities", flush=True)
    small = (200, 20, 100) if args.quick else (1000, 100, 1000)
    r = out["latency"] = latency(small[0], small[1], args.rate, small[2], rnd)
    print(f"(l2) {r['events']} label changes at {r['rate']:.0f}/s, {r['pods']} pods, {r['policies']} policies: "
          f"event to installed p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (target: one change < 10 ms); "
          f"{r['builds']} builds of {r['build_ms_median']} ms (median) each took every change waiting", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
