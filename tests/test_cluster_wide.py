"""Cluster-wide policy (issue 11): each rule of the evaluation order on the model,
the loader's validation, the CLI, the isolation modes' documented matrices, and the
native pipeline against the oracle on the example. The random clusters of
tests/strategies.py carry cluster-wide policies too (test_compiler_grid,
test_differential); the switch checks real packets (tests/switch/test_probe.py)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys

import pytest
from scapy.all import IP, TCP, raw

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath
from pipeline.dataplane.oracle import OraclePipeline
from pipeline.load.build import load_cluster
from pipeline.model.connections import Connections, open_pod_connection

from .conftest import cluster_from
from .packets import ether

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "cluster-wide")

HOUSES = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: g, labels: {house: g}}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: s, labels: {house: s}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: harry, namespace: g, labels: {app: harry}}
    spec: {containers: [{name: c, ports: [{name: web, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]}]}
    status: {podIPs: [{ip: 198.18.0.10}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: draco, namespace: s, labels: {app: draco}}
    spec: {containers: [{name: c, ports: [{name: web, containerPort: 80}]}], nodeName: n1}
    status: {podIPs: [{ip: 198.18.0.11}]}
    ---
    apiVersion: v1
    kind: Node
    metadata: {name: n1, labels: {zone: east}}
    status: {addresses: [{type: InternalIP, address: 198.19.128.7}, {type: Hostname, address: n1}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: centaur, namespace: s, labels: {app: centaur}}
    spec: {hostNetwork: true, nodeName: n1, containers: [{name: c}]}
    """


def netsem(*args):
    """The CLI in a child process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True)


def anp(name, priority, ingress=(), egress=(), subject="{namespaces: {matchLabels: {house: g}}}"):
    return f"""
    ---
    apiVersion: policy.networking.k8s.io/v1alpha1
    kind: AdminNetworkPolicy
    metadata: {{name: {name}}}
    spec:
      priority: {priority}
      subject: {subject}
      ingress: [{", ".join(ingress)}]
      egress: [{", ".join(egress)}]
    """


FROM_S = "from: [{namespaces: {matchLabels: {house: s}}}]"
TO_S = "to: [{namespaces: {matchLabels: {house: s}}}]"


def verdict(text, src="s/draco", dst="g/harry", proto="TCP", port=80):
    c = cluster_from(HOUSES + text)
    return open_pod_connection(c, Connections(), c.pods[src], c.pods[dst], proto, port)


def side(v, direction):
    d = v.ingress if direction == "ingress" else v.egress
    return d.tier, d.allowed, d.admin_rule.name if d.admin_rule else None


def test_the_first_matching_rule_of_the_admin_tier_decides_in_written_order():
    allow_then_deny = anp("a", 10, ingress=[f"{{name: allow, action: Allow, {FROM_S}}}",
                                            f"{{name: deny, action: Deny, {FROM_S}}}"])
    assert side(verdict(allow_then_deny), "ingress") == ("admin", True, "allow")
    deny_then_allow = anp("a", 10, ingress=[f"{{name: deny, action: Deny, {FROM_S}}}",
                                            f"{{name: allow, action: Allow, {FROM_S}}}"])
    assert side(verdict(deny_then_allow), "ingress") == ("admin", False, "deny")


def test_a_lower_priority_number_goes_first_and_ties_are_ordered_by_kind_then_name_with_a_warning():
    text = anp("z-deny", 5, ingress=[f"{{name: d, action: Deny, {FROM_S}}}"]) + \
        anp("a-allow", 6, ingress=[f"{{name: a, action: Allow, {FROM_S}}}"])
    assert side(verdict(text), "ingress") == ("admin", False, "d")
    c, notes = load_cluster_text(HOUSES + anp("z-deny", 5, ingress=[f"{{name: d, action: Deny, {FROM_S}}}"]) +
                                 anp("a-allow", 5, ingress=[f"{{name: a, action: Allow, {FROM_S}}}"]))
    v = open_pod_connection(c, Connections(), c.pods["s/draco"], c.pods["g/harry"], "TCP", 80)
    assert side(v, "ingress") == ("admin", True, "a")          # a-allow before z-deny, by name
    assert any("both have priority 5" in n and "undefined" in n and "g/harry" in n for n in notes), notes


def load_cluster_text(text):
    import io
    import textwrap
    from pipeline.load.build import build_cluster
    from pipeline.load.manifests import load
    result = load(["-"], stdin=io.StringIO(textwrap.dedent(text)))
    return build_cluster(result), result.notes


NP_ALLOW_S = """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: from-s, namespace: g}
    spec:
      podSelector: {}
      ingress: [{from: [{namespaceSelector: {matchLabels: {house: s}}}], ports: [{port: 80}]}]
    """
BANP_DENY_S = """
    ---
    apiVersion: policy.networking.k8s.io/v1alpha1
    kind: BaselineAdminNetworkPolicy
    metadata: {name: default}
    spec:
      subject: {namespaces: {}}
      ingress: [{name: no-s, action: Deny, from: [{namespaces: {matchLabels: {house: s}}}]}]
    """


def test_pass_hands_over_to_networkpolicy_then_to_the_baseline_tier_then_the_default():
    passing = anp("p", 10, ingress=[f"{{name: pass, action: Pass, {FROM_S}}}",
                                    f"{{name: deny, action: Deny, {FROM_S}}}"])
    assert side(verdict(passing), "ingress") == ("", True, None)                 # nothing else: allowed
    assert side(verdict(passing + BANP_DENY_S), "ingress") == ("baseline", False, "no-s")
    v = verdict(passing + BANP_DENY_S + NP_ALLOW_S)                              # the NP selects harry
    assert (v.ingress.tier, v.ingress.allowed, v.ingress.rule.policy) == ("networkpolicy", True, "g/from-s")
    v = verdict(passing + BANP_DENY_S + NP_ALLOW_S, port=81)
    assert (v.ingress.tier, v.ingress.allowed) == ("networkpolicy", False)       # not the baseline's business


def test_admin_allow_and_deny_override_networkpolicy():
    deny_all_np = """
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny-all, namespace: g}
    spec: {podSelector: {}, policyTypes: [Ingress]}
    """
    assert side(verdict(anp("a", 1, ingress=[f"{{name: ok, action: Allow, {FROM_S}}}"]) + deny_all_np),
                "ingress") == ("admin", True, "ok")
    assert side(verdict(anp("a", 1, ingress=[f"{{name: refuse, action: Deny, {FROM_S}}}"]) + NP_ALLOW_S),
                "ingress") == ("admin", False, "refuse")


def test_ports_named_and_ranges_inclusive_and_egress_to_nodes_and_networks():
    named = anp("a", 1, ingress=[f"{{name: web, action: Deny, {FROM_S}, ports: [{{namedPort: web}}]}}"])
    assert not verdict(named).allowed and verdict(named, port=81).allowed
    rng = anp("a", 1, ingress=[f"{{name: r, action: Deny, {FROM_S}, ports: [{{portRange: {{start: 70, end: 80}}}}]}}"])
    assert not verdict(rng, port=80).allowed and verdict(rng, port=81).allowed  # the end is in the range
    # Egress from harry to the node n1's address: a hostNetwork pod on n1 has it.
    nodes = anp("e", 1, egress=["{name: no-east, action: Deny, to: [{nodes: {matchLabels: {zone: east}}}]}"])
    v = verdict(nodes, "g/harry", "s/centaur", port=80)
    assert side(v, "egress") == ("admin", False, "no-east")
    assert verdict(nodes, "g/harry", "s/draco").allowed                     # a pod on n1 is not the node
    nets = anp("e", 1, egress=["{name: no-net, action: Deny, to: [{networks: [198.18.0.11/32]}]}"])
    assert side(verdict(nets, "g/harry", "s/draco"), "egress") == ("admin", False, "no-net")


def test_hostnetwork_pods_are_neither_subjects_nor_pod_peers():
    c = cluster_from(HOUSES + anp("a", 1, egress=[f"{{name: d, action: Deny, {TO_S}}}"],
                                  subject="{namespaces: {}}"))
    assert c.pods["s/centaur"].ips == (ipaddress.ip_address("198.19.128.7"),)    # its node's address
    v = open_pod_connection(c, Connections(), c.pods["g/harry"], c.pods["s/centaur"], "TCP", 80)
    assert v.allowed                                        # not a pods peer: a node address
    v = open_pod_connection(c, Connections(), c.pods["g/harry"], c.pods["s/draco"], "TCP", 80)
    assert side(v, "egress") == ("admin", False, "d")


def test_cluster_network_policy_tiers_and_baseline_pass():
    cnp = """
    ---
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: base}
    spec:
      tier: Baseline
      priority: 3
      subject: {pods: {podSelector: {}}}
      ingress:
      - {name: pass-web, action: Pass, from: [{namespaces: {}}], protocols: [{destinationNamedPort: web}]}
      - {name: deny, action: Deny, from: [{namespaces: {}}]}
    """
    assert verdict(cnp).allowed                                  # Pass in the Baseline tier: the default
    assert side(verdict(cnp, port=81), "ingress") == ("baseline", False, "deny")
    accept = """
    ---
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: acc}
    spec:
      tier: Admin
      priority: 1
      subject: {namespaces: {matchLabels: {house: g}}}
      ingress: [{name: in, action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]
    """
    assert side(verdict(accept + BANP_DENY_S), "ingress") == ("admin", True, "in")     # Accept is Allow
    assert side(verdict(accept + BANP_DENY_S, port=81), "ingress") == ("baseline", False, "no-s")


BAD = [
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1001, subject: {namespaces: {}}}",
     "spec.priority", "between 0 and 1000"),
    ("kind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec: {subject: {namespaces: {}}}",
     "metadata.name", 'metadata.name="default"'),
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}, pods: "
     "{namespaceSelector: {}, podSelector: {}}}}", "spec.subject", "exactly one of"),
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}, ingress: "
     "[{action: Allow, from: [{networks: [10.0.0.0/8]}]}]}", "spec.ingress[0].from[0].networks", "unknown field"),
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}, egress: "
     "[{action: Allow, to: [{networks: [10.0.0.0/8]}], ports: [{namedPort: web}]}]}", "spec.egress[0]",
     "namedPorts"),
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}, egress: "
     "[{action: Accept, to: [{namespaces: {}}]}]}", "spec.egress[0].action", "Unsupported value"),
    ("kind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}, egress: "
     "[{action: Allow, to: [{networks: [300.0.0.0/8]}]}]}", "spec.egress[0].to[0].networks[0]", "CIDR"),
    ("kind: ClusterNetworkPolicy\nmetadata: {name: a}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}},"
     " ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: "
     "{start: 80, end: 80}}}}]}]}", "spec.ingress[0].protocols[0].tcp.destinationPort.range", "less than End"),
    ("kind: ClusterNetworkPolicy\nmetadata: {name: a}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}},"
     " ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]}",
     "spec.ingress[0].protocols[0].tcp.destinationPort", "Required value"),
    ("kind: ClusterNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}}",
     "spec.tier", "Required value"),
]


@pytest.mark.parametrize("doc,field,message", BAD)
def test_bad_cluster_wide_policies_are_refused_with_file_document_field(tmp_path, doc, field, message):
    api = "v1alpha2" if "ClusterNetworkPolicy" in doc else "v1alpha1"
    f = tmp_path / "bad.yaml"
    f.write_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n"
                 f"apiVersion: policy.networking.k8s.io/{api}\n{doc}\n")
    r = netsem("reach", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert re.search(rf"{re.escape(str(f))}:1:{re.escape(field)}: .*{re.escape(message)}", r.stderr), r.stderr


def test_verdict_names_the_tier_and_rule_and_policies_lists_what_applies():
    r = netsem("verdict", "-f", EXAMPLE, "--from", "slytherin/draco-malfoy", "--to", "gryffindor/harry-potter",
               "--port", "80", "-o", "json")
    assert r.returncode == 1, r.stderr
    v = json.loads(r.stdout)["ingress"]
    assert (v["tier"], v["adminRule"]["policy"], v["adminRule"]["name"], v["adminRule"]["action"]) == \
        ("admin", "AdminNetworkPolicy/gryffindor-guard", "deny-slytherin", "Deny")
    r = netsem("policies", "-f", EXAMPLE, "--pod", "gryffindor/harry-potter", "-o", "json")
    rel = json.loads(r.stdout)
    assert [(p["policy"], p["tier"]) for p in rel["clusterWide"]] == \
        [("AdminNetworkPolicy/gryffindor-guard", "Admin"), ("BaselineAdminNetworkPolicy/default", "Baseline")]


def _doc_blocks() -> dict:
    text = open(os.path.join(ROOT, "docs", "isolation.md")).read()
    return dict(re.findall(r"## `--mode (\w+)`\n.*?```\n(.*?)```", text, re.S))


@pytest.mark.parametrize("mode", ["open", "namespace", "application"])
def test_isolation_modes_applied_to_the_example_give_the_documented_matrices(tmp_path, mode):
    shop = os.path.join(ROOT, "examples", "shop")
    r = netsem("isolation", "-f", shop, "--mode", mode)
    assert r.returncode == 0, r.stderr
    (tmp_path / "iso.yaml").write_text(r.stdout)
    r = netsem("reach", "-f", shop, "-f", str(tmp_path / "iso.yaml"), "--ports", "8080,5432", "--protocols", "TCP")
    assert r.returncode == 0, r.stderr
    assert r.stdout == _doc_blocks()[mode]


def test_the_native_pipeline_agrees_with_the_oracle_on_the_example_for_every_pair():
    """A SYN from every pod to every pod on the example's ports, through the C tiers
    and through the oracle (the model): the same fate, reason and rules."""
    cluster, _ = load_cluster([EXAMPLE])
    compiled = compile_cluster(cluster)
    dp = Datapath()
    dp.install(compiled)
    oracle = OraclePipeline(cluster)
    pods = [(a.port, cluster.plane.address(a)) for a in cluster.plane.attachments()]
    from pipeline.dataplane.flows import FlowBuilder
    flows = FlowBuilder(compiled)
    reasons, records = set(), {}
    for sport, sip in pods:
        for _, dip in pods:
            for port in (80, 8080, 8090):
                frame = raw(ether() / IP(src=str(sip), dst=str(dip)) / TCP(sport=40000 + port, dport=port, flags="S"))
                got = dp.run_batch([frame], [sport], 10**9)[0]
                want = oracle.process(frame, sport, 10**9)
                assert got.comparable() == want.comparable(), (sip, dip, port, got, want)
                reasons.add(got.reason)
                records[(str(sip), str(dip), port)] = flows.from_result(got, sport, 0)
    assert {"denied_admin_ingress", "denied_admin_egress", "denied_baseline_ingress", "denied_ingress",
            "new"} <= reasons, reasons
    # Flow records name the tier that denied and the cluster-wide rule that allowed.
    r = records[("198.18.0.21", "198.18.0.20", 80)]                 # draco -> harry: Admin Deny
    assert (r["verdict"], r["drop_reason_desc"], r["traffic_direction"], r["ingress_denied_by"]) == \
        ("DROPPED", "POLICY_DENIED", "INGRESS", [{"tier": "admin"}])
    r = records[("198.18.0.22", "198.18.0.20", 80)]                 # cedric -> harry: Admin Allow
    assert r["ingress_allowed_by"] == [{"kind": "AdminNetworkPolicy", "name": "gryffindor-guard",
                                        "rule": "ingress[0]"}]
