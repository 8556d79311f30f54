"""Loading a big dump (issue 13, "bounded inputs"): a `kubectl get -o yaml`-shaped
List of N objects (default 100,000: 60 % Pods with status and the metadata the API
server adds, 20 % Services, 20 % NetworkPolicies), written to a file, then loaded by
`netsem`'s loader in a child process: wall time and peak memory (max RSS) of the
child, against the file's size. Run alone (it measures memory).

    python bench/load_bench.py [--objects 100000] [--format yaml|json] [--json FILE]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def meta(name: str, ns: str, i: int, labels: dict) -> dict:
    return {"name": name, "namespace": ns, "labels": labels, "uid": f"{i:08x}-0000-4000-8000-{i:012x}",
            "resourceVersion": str(100000 + i), "creationTimestamp": "2026-12-01T00:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}" * 20},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]}


def objects(n: int):
    pods, services = n * 6 // 10, n * 2 // 10
    pod_net = list(ipaddress.ip_network("198.18.0.0/16").hosts())
    vip_net = ipaddress.ip_network("198.19.0.0/17").hosts()
    for i in range(pods):
        ns = f"ns-{i % 200:03d}"
        yield {"apiVersion": "v1", "kind": "Pod",
               "metadata": meta(f"pod-{i:06d}", ns, i, {"app": f"app-{i % 50}", "tier": "web"}),
               "spec": {"nodeName": "node", "containers": [{"name": "c", "image": "registry.example/app:1.0",
                                                            "ports": [{"name": "http", "containerPort": 8080}],
                                                            "resources": {"requests": {"cpu": "100m"}}}]},
               "status": {"phase": "Running", "podIP": str(pod_net[i]), "podIPs": [{"ip": str(pod_net[i])}],
                          "conditions": [{"type": "Ready", "status": "True"}]}}
    for i in range(services):
        ns = f"ns-{i % 200:03d}"
        yield {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"svc-{i:06d}", ns, pods + i, {}),
               "spec": {"selector": {"app": f"app-{i % 50}"}, "clusterIP": str(next(vip_net)),
                        "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}}
    for i in range(n - pods - services):
        ns = f"ns-{i % 200:03d}"
        yield {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": meta(f"pol-{i:06d}", ns, pods + services + i, {}),
               "spec": {"podSelector": {"matchLabels": {"app": f"app-{i % 50}"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"app-{(i + 1) % 50}"}}}],
                                     "ports": [{"port": "http"}]}]}}


CHILD = """
import sys, time
from pipeline.load.build import load_cluster
t = time.perf_counter()
c, notes = load_cluster([sys.argv[1]])
took = time.perf_counter() - t
# VmHWM: this process's own peak. (ru_maxrss would also count the bench's memory: a
# child started by (v)fork inherits its parent's high-water mark at exec.)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(took, len(c.pods), len(c.services), len(c.policies), hwm)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--format", choices=("yaml", "json"), default="yaml",
                    help="the dump as `kubectl get -o yaml` (default) or `-o json` prints it")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="netsem-load-") as d:
        path = os.path.join(d, f"dump.{args.format}")
        dump = {"apiVersion": "v1", "kind": "List", "items": list(objects(args.objects))}
        with open(path, "w") as f:
            if args.format == "json":
                json.dump(dump, f, indent=4)
            else:
                yaml.dump(dump, f, Dumper=Dumper, sort_keys=False)
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            print(r.stderr, file=sys.stderr)
            return 1
        load_s, pods, services, policies, hwm_kib = r.stdout.split()
        rss = int(hwm_kib) * 1024
    out = {"objects": args.objects, "format": args.format, "file_mb": round(size / 2**20, 1), "load_s": round(float(load_s), 1),
           "process_s": round(wall, 1), "max_rss_mb": round(rss / 2**20), "pods": int(pods),
           "services": int(services), "policies": int(policies)}
    print(f"{args.objects:,} objects ({out['file_mb']} MB of {args.format.upper()}: {pods} pods, {services} Services, {policies} "
          f"NetworkPolicies): loaded in {out['load_s']} s ({out['process_s']} s with the interpreter), peak memory "
          f"{out['max_rss_mb']} MB ({out['max_rss_mb'] / out['file_mb']:.1f}x the file)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
