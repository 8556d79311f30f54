"""Nanoseconds per packet on secondary networks, against the cluster network alone in
the same run (issue 9: domains within 5 % of the single-domain path; 100 networks
no more per packet than one):

  single   2,000 pods on the cluster network only (as many interfaces as below);
           traffic between the eth0s of 1,000 of them;
  domain   the same pods, each also on one secondary network in an IP address domain
           of its own, at the same addresses as their eth0s (every address in two
           domains); traffic between their net1s;
  100 nets the same pods, ten to a network, 100 networks in 100 domains, every
           network at the same ten addresses; traffic within each network.

Each network has one policy (a NetworkPolicy on the cluster network, a
MultiNetworkPolicy for each secondary one) letting its pods in from one another on
TCP/80-90 (the ports the connections use), so every timed packet is policed and
allowed. Timed: SYNs of distinct new connections (a fresh pipeline a rep) and ACKs of
established ones; reps alternate between the three, each first in turn, so the
machine's moods fall on all alike. One core, batches of 256. Every figure prints the
verdict mix of the packets it timed.

    python bench/networks_bench.py [--quick] [--json FILE]

Instructions per established packet, which this VM's noise does not move (callgrind
counts ns_pipeline_run; the ACKs' cost is the difference of the two runs):

    for c in single domain "100 nets"; do for a in 0 1; do
      valgrind --tool=callgrind --toggle-collect=ns_pipeline_run \
        $(python -c 'import sys; print(sys.executable)') bench/networks_bench.py --callgrind "$c" $a
    done; done
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import (BATCH, SECOND, cluster_of, frames_of, handshakes, mix, mix_text,  # noqa: E402
                            new_pipeline, reasons, run_all)

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402

PODS = 1000


def _policy(kind: str, name: str, network: str = "") -> dict:
    meta = {"name": name, "namespace": "n"}
    if kind == "MultiNetworkPolicy":
        meta["annotations"] = {"k8s.v1.cni.cncf.io/policy-for": network}
    return {"apiVersion": "k8s.cni.cncf.io/v1beta1" if kind == "MultiNetworkPolicy" else "networking.k8s.io/v1",
            "kind": kind, "metadata": meta,
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80, "endPort": 90}]}]}}


def docs_for(networks: int, pods: int = PODS) -> list:
    """`pods` pods; with networks > 0, each pod also on network i % networks (its
    net1), network k in domain d<k>, the k-th network's pods at 198.18.0.1... in order."""
    hosts = list(ipaddress.ip_network("198.18.0.0/16").hosts())
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}},
            _policy("NetworkPolicy", "cluster")]
    for k in range(networks):
        config = {"cniVersion": "1.0.0", "name": f"net-{k}", "type": "macvlan", "ipAddressDomain": f"d{k}"}
        docs.append({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                     "metadata": {"name": f"net-{k}", "namespace": "n"}, "spec": {"config": json.dumps(config)}})
        docs.append(_policy("MultiNetworkPolicy", f"on-{k}", f"net-{k}"))
    for i in range(pods):
        meta = {"name": f"p{i}", "namespace": "n", "labels": {"app": f"a{i % 20}"}}
        if networks:
            k = i % networks
            meta["annotations"] = {"k8s.v1.cni.cncf.io/networks": json.dumps(
                [{"name": f"net-{k}", "interface": "net1", "ips": [str(hosts[i // networks])]}])}
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                     "spec": {"containers": [{"name": "c", "image": "x"}]},
                     "status": {"podIPs": [{"ip": str(hosts[i])}]}})
    return docs


def pairs_of(compiled, rnd, n, secondary: bool):
    """n random (src, dst, src port, dst port) within one network each time, between
    the first PODS pods."""
    plane = compiled.cluster.plane
    groups: dict = {}
    for a in plane.attachments():
        if (a.interface != "eth0") == secondary and int(a.pod.split("/p")[1]) < PODS:
            groups.setdefault(a.network, []).append(a)
    nets = sorted(groups)
    out = []
    for _ in range(n):
        g = groups[rnd.choice(nets)]
        a, b = rnd.sample(g, 2)
        out.append((str(plane.address(a)), str(plane.address(b)), a.port, b.port))
    return out


CASES = {"single": (0, False), "domain": (1, True), "100 nets": (100, True)}


def compiled_case(name: str):
    nets, _ = CASES[name]
    return compile_cluster(cluster_of(docs_for(nets, 2 * PODS if not nets else PODS)))


def callgrind(name: str, acks: str) -> int:
    compiled = compiled_case(name)
    syn, synack, ack = handshakes(pairs_of(compiled, random.Random(9), 20000, CASES[name][1]))
    res = ffi.new("struct ns_result[]", BATCH)
    p = new_pipeline(compiled, connections=1 << 16)
    for frames in (syn, synack, ack) + ((ack,) if acks == "1" else ()):
        run_all(p, frames_of(frames), SECOND, res)
    lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer packets (a smoke run)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--callgrind", nargs=2, metavar=("CASE", "ACKS"),
                    help="only open 20,000 connections of CASE (and with ACKS 1, run their ACKs once "
                         "more), untimed: for counting instructions under callgrind")
    args = ap.parse_args()
    if args.callgrind:
        return callgrind(*args.callgrind)
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})   # one core, the same one throughout
    packets, reps = (20_000, 3) if args.quick else (200_000, 7)
    rnd = random.Random(9)
    cases = CASES
    compiled = {name: compiled_case(name) for name in cases}
    res = ffi.new("struct ns_result[]", BATCH)
    ready = {}
    for name, (_, secondary) in cases.items():
        syn, synack, ack = handshakes(pairs_of(compiled[name], rnd, packets, secondary))
        p = new_pipeline(compiled[name], connections=1 << 20)
        run_all(p, frames_of(syn), SECOND, res)
        run_all(p, frames_of(synack), SECOND, res)
        run_all(p, frames_of(ack), SECOND, res)
        ready[name] = (frames_of(syn), p, frames_of(ack), reasons(p))
    new_t = {n: [] for n in cases}
    est_t = {n: [] for n in cases}
    new_mix = {}
    names = list(cases)
    for rep in range(reps):
        for name in names[rep % 3:] + names[:rep % 3]:      # each case first in turn
            syns, p, acks, _ = ready[name]
            q = new_pipeline(compiled[name], connections=1 << 20)
            before = reasons(q)
            new_t[name].append(run_all(q, syns, SECOND, res) / syns.n)
            new_mix[name] = mix(before, reasons(q))
            lib.ns_pipeline_swap_tables(q, ffi.NULL, 0, ffi.NULL)    # the tables stay with `compiled`
            est_t[name].append(run_all(p, acks, SECOND + SECOND // 2, res) / acks.n)
    out = {}
    for name in cases:
        syns, p, acks, before = ready[name]
        out[name] = {"new_ns": round(sorted(new_t[name])[reps // 2] * 1e9, 1), "new_mix": new_mix[name],
                     "established_ns": round(sorted(est_t[name])[reps // 2] * 1e9, 1),
                     "established_mix": mix(before, reasons(p)), "stats": compiled[name].stats()}
        lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
    base = out["single"]
    for name, r in out.items():
        r["new_ratio"] = round(r["new_ns"] / base["new_ns"], 3)
        r["established_ratio"] = round(r["established_ns"] / base["established_ns"], 3)
        print(f"{name:>8}: new {r['new_ns']:6.1f} ns/packet ({r['new_ratio']:.3f}x) [{mix_text(r['new_mix'])}]; "
              f"established {r['established_ns']:6.1f} ns ({r['established_ratio']:.3f}x) "
              f"[{mix_text(r['established_mix'])}]; {r['stats']['interfaces']} interfaces, "
              f"{r['stats']['identities']} identities", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
