"""A live cluster's costs (issue 10), each against its target, measured as the code
does it today:

  (l1) a full load and compile of a generated cluster: 10,000 pods, 1,000 policies
       (target < 1 s), with the tables' memory and entry counts;
  (l2) event-to-installed latency: label changes arriving at a steady rate (100 a
       second by default) on generated clusters of 1,000 pods / 100 policies and of
       10,000 pods / 1,000 policies, each applied through LiveCluster (the loader: a
       label change is Cluster.relabeled), compiled as a table delta where it is one
       (compiler/delta.py; else in full) and installed into a running Datapath;
       p50/p99 of (installed - arrived), and how many builds were deltas;
  (l3) one change alone, event to installed, on the same two clusters: a label change
       to an identity that exists, one to a label set never seen, and a NetworkPolicy
       changed (its pod selector widened or narrowed).

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
from pipeline.dataplane.compiler.delta import compile_next  # noqa: E402
from pipeline.dataplane.driver import Datapath  # noqa: E402
from pipeline.load.live import LiveCluster  # noqa: E402
from pipeline.switch.sources import delta_of  # noqa: E402


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


def latency(pods: int, policies: int, rate: float, events: int, rnd: random.Random, new_every: int) -> dict:
    """Events arrive on a schedule; the follower, as `netsem up --kubeconfig` does,
    takes every event that has arrived, applies them in one build, compiles (a delta
    when they were label changes) and installs, and starts again. Every new_every-th
    change gives a label set never seen (a new identity: a row and a column)."""
    docs = generate(pods=pods, namespaces=max(20, pods // 100), policies=policies)
    live = LiveCluster()
    live.load(docs)
    dp = Datapath()
    compiled = compile_cluster(live.cluster)
    dp.install(compiled)
    pod_docs = [d for d in docs if d["kind"] == "Pod"]
    changes = []
    for n in range(events):
        d = copy.deepcopy(rnd.choice(pod_docs))
        d["metadata"]["labels"]["tier"] = rnd.choice(["web", "api", "db"])
        if new_every and n % new_every == new_every - 1:
            d["metadata"]["labels"]["canary"] = str(n)
        changes.append(("MODIFIED", d))
    deltas = new_ids = 0
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
        n_ids = len(compiled.identities)
        nxt = compile_next(compiled, live.cluster, **delta_of(applied))
        deltas += nxt.delta
        new_ids += max(0, len(nxt.identities) - n_ids)
        if nxt is not compiled:
            compiled = nxt
            dp.install(compiled)
        done = time.perf_counter()
        service.append(done - t0)
        builds += 1
        lat += [done - arrival[k] for k in range(i, j)]
        i = j
    lat.sort()
    service.sort()
    return {"pods": pods, "policies": policies, "rate": rate, "events": events, "builds": builds,
            "p50_ms": round(lat[len(lat) // 2] * 1e3, 1), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 1),
            "build_ms_median": round(service[len(service) // 2] * 1e3, 1),
            "build_ms_p99": round(service[int(len(service) * 0.99)] * 1e3, 1), "deltas": deltas,
            "new_identities": new_ids, "tables_mb": round(lib.ns_tables_memory(compiled.tables) / 2**20, 1)}


def one_change(pods: int, policies: int, n: int, rnd: random.Random) -> dict:
    """(l3) One label change at a time, nothing queued: apply, compile, install; the
    median and worst of n, for a move to an identity that exists and for a label set
    never seen (a new identity)."""
    docs = generate(pods=pods, namespaces=max(20, pods // 100), policies=policies)
    live = LiveCluster()
    live.load(docs)
    dp = Datapath()
    compiled = compile_cluster(live.cluster)
    dp.install(compiled)
    pod_docs = [d for d in docs if d["kind"] == "Pod"]
    out = {"pods": pods, "policies": policies}
    for kind in ("existing", "new"):
        times, deltas = [], 0
        while len(times) < n:
            d = copy.deepcopy(rnd.choice(pod_docs))
            labels = d["metadata"]["labels"]
            cur = live.cluster.pods[f"{d['metadata']['namespace']}/{d['metadata']['name']}"].labels
            labels["tier"] = rnd.choice([t for t in ("web", "api", "db") if t != cur.get("tier")])
            if kind == "new":
                labels["canary"] = str(len(times))
            t0 = time.perf_counter()
            a = live.apply("MODIFIED", d)
            nxt = compile_next(compiled, live.cluster, **delta_of([a]))
            if kind == "existing" and len(nxt.identities) != len(compiled.identities):
                compiled = nxt                     # it made a new identity after all: not counted
                dp.install(compiled)
                continue
            compiled = nxt
            dp.install(compiled)
            times.append(time.perf_counter() - t0)
            deltas += compiled.delta
        times.sort()
        out[kind] = {"median_ms": round(times[len(times) // 2] * 1e3, 2), "max_ms": round(times[-1] * 1e3, 1),
                     "deltas": deltas, "n": n}
    # A NetworkPolicy changed: its pod selector widened to every pod of its namespace.
    pol_docs = [d for d in docs if d["kind"] == "NetworkPolicy"]
    times, deltas = [], 0
    for _ in range(n):
        d = copy.deepcopy(rnd.choice(pol_docs))
        d["spec"]["podSelector"] = {} if d["spec"]["podSelector"] else {"matchLabels": {"tier": "web"}}
        t0 = time.perf_counter()
        a = live.apply("MODIFIED", d)
        nxt = compile_next(compiled, live.cluster, **delta_of([a]))
        if nxt is not compiled:
            compiled = nxt
            dp.install(compiled)
        times.append(time.perf_counter() - t0)
        deltas += compiled.delta
    times.sort()
    out["policy"] = {"median_ms": round(times[len(times) // 2] * 1e3, 2), "max_ms": round(times[-1] * 1e3, 1),
                     "deltas": deltas, "n": n}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller clusters (a smoke run)")
    ap.add_argument("--rate", type=float, default=100.0, help="events a second for (l2) (default 100)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--skip-full", action="store_true", help="only (l2)")
    ap.add_argument("--new-every", type=int, default=10,
                    help="every Nth label change is a label set never seen (default 10; 0: never)")
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
    sizes = [(200, 20, 100)] if args.quick else [(1000, 100, 1000), (10000, 1000, 500)]
    out["latency"] = []
    for pods, policies, events in sizes:
        r = latency(pods, policies, args.rate, events, rnd, args.new_every)
        out["latency"].append(r)
        print(f"(l2) {r['events']} label changes at {r['rate']:.0f}/s, {r['pods']} pods, {r['policies']} policies "
              f"(every {args.new_every}th a new label set; {r['new_identities']} new identities): event to "
              f"installed p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (target: one change < 10 ms); {r['builds']} "
              f"builds ({r['deltas']} deltas) of {r['build_ms_median']} ms median, {r['build_ms_p99']} ms p99; "
              f"tables {r['tables_mb']} MB", flush=True)
    out["one"] = []
    for pods, policies in ([(200, 20)] if args.quick else [(1000, 100), (10000, 1000)]):
        r = one_change(pods, policies, 20, rnd)
        out["one"].append(r)
        e, n = r["existing"], r["new"]
        print(f"(l3) one label change alone, {pods} pods, {policies} policies, event to installed: to an "
              f"identity that exists {e['median_ms']} ms median ({e['max_ms']} max; {e['deltas']}/{e['n']} "
              f"deltas); a new label set {n['median_ms']} ms median ({n['max_ms']} max; {n['deltas']}/{n['n']} "
              f"deltas) (target < 10 ms); a NetworkPolicy changed {r['policy']['median_ms']} ms median "
              f"({r['policy']['max_ms']} max; {r['policy']['deltas']}/{r['policy']['n']} deltas)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
