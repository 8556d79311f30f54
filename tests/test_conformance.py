"""The network-policy-api conformance suite's ClusterNetworkPolicy (v1alpha2) tests,
replayed on the model with the upstream fixtures (tests/data/network-policy-api);
every fixture's cluster is also compiled and held to the model on every pair, port
and protocol (check_grid):

  - CNPAdminTier{Ingress,Egress}{TCP,UDP,SCTP} and CNPBaselineTier…: rule order
    (Accept before Deny, swapped), port-specific rules, Pass (Admin tier only);
  - CNPAdminTierPriorityField: priority 60 -> 40 puts a Pass before a Deny, and the
    Baseline tier then allows;
  - CNPAdminTierIntegration: Deny, then Pass to a NetworkPolicy that allows, then the
    NetworkPolicy deleted: the Baseline tier denies;
  - the inline CIDR rules: `networks` peers matching pods, inserted in front.

The suite's base runs StatefulSets; the pods here are theirs: two per house, the
same labels and container ports (conformance/base/manifests.yaml)."""

from __future__ import annotations

import copy
import os
import re

import pytest
import yaml

from pipeline.load.build import build_cluster
from pipeline.load.manifests import Document, parse_documents
from pipeline.model.connections import Connections, open_pod_connection

from .test_compiler_grid import check_grid

DATA = os.path.join(os.path.dirname(__file__), "data", "network-policy-api")
HOUSES = {"gryffindor": "harry-potter", "slytherin": "draco-malfoy", "hufflepuff": "cedric-diggory",
          "ravenclaw": "luna-lovegood"}
PORTS = {"TCP": (80, 8080), "UDP": (53, 5353), "SCTP": (9003, 9005)}


def ns(house: str) -> str:
    return f"network-policy-conformance-{house}"


def base() -> list[dict]:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns(h), "labels": {"conformance-house": h}}}
            for h in list(HOUSES) + ["forbidden-forrest"]]
    for i, (house, name) in enumerate(HOUSES.items()):
        for r in range(2):
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{name}-{r}", "namespace": ns(house),
                                      "labels": {"conformance-house": house}},
                         "spec": {"containers": [{"name": "c", "ports": [
                             {"name": "web", "containerPort": 80}, {"containerPort": 8080},
                             {"containerPort": 5353, "protocol": "UDP"},
                             {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                             {"containerPort": 9003, "protocol": "SCTP"},
                             {"containerPort": 9005, "protocol": "SCTP"}]}]},
                         "status": {"podIPs": [{"ip": f"198.18.0.{10 + 2 * i + r}"}]}})
    return docs


def fixture(name: str) -> list[dict]:
    with open(os.path.join(DATA, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def cluster(docs: list[dict]):
    return build_cluster(parse_documents([Document("fixture", i, d) for i, d in enumerate(docs)]))


def allowed(c, src: str, dst: str, proto: str, port: int, replica: int = 0) -> bool:
    a, b = (c.pods[f"{ns(h)}/{HOUSES[h]}-{replica}"] for h in (src, dst))
    return open_pod_connection(c, Connections(), a, b, proto, port).allowed


def swapped(pol: dict, direction: str, i: int, j: int) -> dict:
    pol = copy.deepcopy(pol)
    rules = pol["spec"][direction]
    rules[i], rules[j] = rules[j], rules[i]
    return pol


RULE = re.compile(r"(allow|deny|pass)-(?:to|from)-(\w+?)-(everything-else|everything|at-port-(\d+))$")
PROTOCOL_FIXTURES = [f"{tier}_tier_standard-{d}-{p}-rules.yaml" for tier in ("admin", "baseline")
                     for d in ("ingress", "egress") for p in ("tcp", "udp", "sctp")]


@pytest.mark.parametrize("name", PROTOCOL_FIXTURES)
def test_the_protocol_rule_fixtures(name):
    """Rules X (allow, deny[, pass] everything), Y (deny[, pass] at port P), Z (allow
    at port Q, deny the rest), as the upstream tests probe them."""
    pol = fixture(name)[0]
    direction = "ingress" if "-ingress-" in name else "egress"
    proto = name.rsplit("-", 2)[1].upper()
    subject = pol["spec"]["subject"]["namespaces"]["matchLabels"]["kubernetes.io/metadata.name"].rsplit("-", 1)[1]
    rules = [RULE.match(r["name"]).groups() for r in pol["spec"][direction]]
    x, y, z = rules[0][1], next(r[1] for r in rules if r[3] and r[0] == "deny"), rules[-1][1]
    p = int(next(r[3] for r in rules if r[1] == y))
    q = int(next(r[3] for r in rules if r[1] == z and r[3]))
    other = {port for port in PORTS[proto] if port != q}.pop()

    def ok(c, peer, port):
        src, dst = (peer, subject) if direction == "ingress" else (subject, peer)
        return allowed(c, src, dst, proto, port)
    c = cluster(base() + [pol])
    check_grid(c, ports=sorted(set(PORTS[proto])), protocols=(proto,))
    assert ok(c, x, p) and ok(c, x, q)                         # Accept before Deny
    assert ok(c, z, q) and not ok(c, z, other)                 # the port's Accept, then the Deny
    assert not ok(c, y, p) and ok(c, y, {port for port in PORTS[proto] if port != p}.pop())
    c = cluster(base() + [swapped(pol, direction, 0, 1)])
    assert not ok(c, x, p)                                     # Deny first now
    if name.startswith("admin"):
        c = cluster(base() + [swapped(pol, direction, 0, 2)])
        assert ok(c, x, p)                                     # Pass first: nothing else decides
        deny_y = next(i for i, r in enumerate(rules) if r[1] == y and r[0] == "deny")
        c = cluster(base() + [swapped(pol, direction, deny_y, deny_y + 1)])
        assert ok(c, y, p)                                     # Pass before the Deny at P


def test_priority_field():
    docs = fixture("admin_tier_standard-priority-field.yaml")
    assert not allowed(cluster(base() + docs), "slytherin", "gryffindor", "TCP", 80)
    assert not allowed(cluster(base() + docs), "gryffindor", "slytherin", "UDP", 53)
    moved = copy.deepcopy(docs)
    for d in moved:
        if d["metadata"]["name"] == "old-priority-60-new-priority-40-example":
            d["spec"]["priority"] = 40
    c = cluster(base() + moved)
    check_grid(c, ports=[80, 53], protocols=("TCP", "UDP"))
    assert allowed(c, "slytherin", "gryffindor", "TCP", 80)    # Pass, then the Baseline tier allows
    assert allowed(c, "gryffindor", "slytherin", "UDP", 53)


def test_admin_tier_networkpolicy_baseline_integration():
    docs = fixture("api_integration_standard-anp-np-banp.yaml")
    c = cluster(base() + docs)
    assert not allowed(c, "slytherin", "gryffindor", "TCP", 80)
    passing = copy.deepcopy(docs)
    for r in passing[0]["spec"]["ingress"] + passing[0]["spec"]["egress"]:
        r["action"] = "Pass"
    c = cluster(base() + passing)
    check_grid(c, ports=[80], protocols=("TCP",))
    assert allowed(c, "slytherin", "gryffindor", "TCP", 80) and allowed(c, "gryffindor", "slytherin", "TCP", 80)
    without_np = [d for d in passing if d["kind"] != "NetworkPolicy"]
    c = cluster(base() + without_np)
    assert not allowed(c, "slytherin", "gryffindor", "TCP", 80)    # the Baseline tier denies
    assert not allowed(c, "gryffindor", "slytherin", "TCP", 80)


@pytest.mark.parametrize("tier", ["admin", "baseline"])
def test_inline_cidr_peers(tier):
    pol = fixture(f"{tier}_tier_standard-egress-inline-cidr-rules.yaml")[0]
    c = cluster(base() + [pol])
    check_grid(c, ports=[80, 53, 9003], protocols=("TCP", "UDP", "SCTP"))
    for dst in ("ravenclaw", "hufflepuff"):
        assert not allowed(c, "gryffindor", dst, "TCP", 80)        # 0.0.0.0/0 and ::/0: pods too
    assert allowed(c, "gryffindor", "slytherin", "TCP", 80)        # an earlier rule
    luna, cedric = (c.pod_address(f"{ns(h)}/{HOUSES[h]}-0") for h in ("ravenclaw", "hufflepuff"))
    pol = copy.deepcopy(pol)
    pol["spec"]["egress"].insert(0, {"name": "allow-two-pods", "action": "Accept",
                                     "to": [{"networks": [f"{luna}/32", f"{cedric}/32"]}]})
    c = cluster(base() + [pol])
    assert allowed(c, "gryffindor", "ravenclaw", "TCP", 80) and allowed(c, "gryffindor", "hufflepuff", "UDP", 53)
    assert not allowed(c, "gryffindor", "ravenclaw", "TCP", 80, replica=1)


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(DATA) if n.endswith(".yaml")))
def test_every_fixture_compiles_to_what_the_model_decides(name):
    """Each upstream fixture as given: loaded, compiled, and the tables held to the
    model on every pair, port and protocol of the base."""
    c = cluster(base() + fixture(name))
    assert c.admin_policies, name
    check_grid(c, ports=[80, 8080, 53, 5353, 9003, 9005], protocols=("TCP", "UDP", "SCTP"))
