"""Generates a synthetic cluster as manifests: N pods in M namespaces with P policies
mixing every peer kind (pod, namespace, both, ipBlock with except), named and numeric
ports, ingress and egress. Deterministic for a given seed.

    python bench/gen_cluster.py --pods 1000 --namespaces 50 --policies 500 -o /tmp/big.yaml
"""

from __future__ import annotations

import argparse
import random
import sys

import yaml


def generate(pods: int = 1000, namespaces: int = 50, policies: int = 500, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    docs: list[dict] = []
    apps = [f"app-{i}" for i in range(8)]
    for n in range(namespaces):
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": f"ns-{n:02d}", "labels": {"team": f"team-{n % 5}",
                                                                    "env": rnd.choice(["prod", "dev"])}}})
    for p in range(pods):
        ns = f"ns-{p % namespaces:02d}"
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"pod-{p:04d}", "namespace": ns,
                                  "labels": {"app": rnd.choice(apps), "tier": rnd.choice(["web", "api", "db"])}},
                     "spec": {"containers": [{"name": "c", "image": "x",
                                              "ports": [{"name": "http", "containerPort": 80}]}]}})

    def selector():
        r = rnd.random()
        if r < 0.2:
            return {}
        if r < 0.7:
            return {"matchLabels": {"app": rnd.choice(apps)}}
        return {"matchExpressions": [{"key": "tier", "operator": rnd.choice(["In", "NotIn"]),
                                      "values": rnd.sample(["web", "api", "db"], 2)}]}

    def peer():
        r = rnd.random()
        if r < 0.35:
            return {"podSelector": selector()}
        if r < 0.6:
            return {"namespaceSelector": {"matchLabels": {"team": f"team-{rnd.randrange(5)}"}}}
        if r < 0.85:
            return {"namespaceSelector": {"matchLabels": {"env": rnd.choice(["prod", "dev"])}},
                    "podSelector": selector()}
        octet = rnd.randrange(4)
        return {"ipBlock": {"cidr": f"198.18.{octet}.0/24", "except": [f"198.18.{octet}.{rnd.randrange(8) * 16}/28"]}}

    def ports():
        r = rnd.random()
        if r < 0.3:
            return None
        if r < 0.6:
            return [{"port": "http"}]
        if r < 0.8:
            return [{"protocol": "TCP", "port": 80}]
        return [{"protocol": "TCP", "port": 70, "endPort": 90}]

    def rule(key):
        out = {}
        if rnd.random() < 0.9:
            out[key] = [peer() for _ in range(rnd.randint(1, 2))]
        p = ports()
        if p:
            out["ports"] = p
        return out

    for i in range(policies):
        ns = f"ns-{i % namespaces:02d}"
        types = rnd.choice([["Ingress"], ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec = {"podSelector": selector(), "policyTypes": types}
        if "Ingress" in types:
            spec["ingress"] = [rule("from") for _ in range(rnd.randint(0, 2))]
        if "Egress" in types:
            spec["egress"] = [rule("to") for _ in range(rnd.randint(0, 2))]
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"pol-{i:04d}", "namespace": ns}, "spec": spec})
    return docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--policies", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    a = ap.parse_args()
    docs = generate(a.pods, a.namespaces, a.policies, a.seed)
    out = sys.stdout if a.output == "-" else open(a.output, "w")
    yaml.safe_dump_all(docs, out, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
