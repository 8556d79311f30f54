"""NetworkPolicy v1 semantics, one test per rule, using the examples of the
Kubernetes documentation (concepts/services-networking/network-policies)."""


import pytest

from pipeline.model.connections import Connections, open_connection_with_ip_addresses, open_pod_connection
from pipeline.model.cluster import ClusterConfig
from pipeline.model.reach import ReachComputer

NS = """
apiVersion: v1
kind: Namespace
metadata: {{name: {name}, labels: {labels}}}
---
"""
POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  hostNetwork: {host}
  containers: [{{name: c, ports: [{{name: http, containerPort: 80}}, {{name: dns, containerPort: 53, protocol: UDP}}, {{name: alt, containerPort: 8080}}]}}]
status: {{podIP: {ip}}}
---
"""


def world(policies: str, extra_pods=()):
    """default: a (role=db), b (role=frontend), c (no labels); other (project=myproject):
    d (role=frontend); node: hostNetwork pod h."""
    text = NS.format(name="default", labels="{}") + NS.format(name="other", labels="{project: myproject}")
    pods = [("default", "a", "{role: db}", "198.18.0.10"), ("default", "b", "{role: frontend}", "198.18.0.11"),
            ("default", "c", "{}", "198.18.0.12"), ("other", "d", "{role: frontend}", "198.18.1.10"),
            *extra_pods]
    for ns, name, labels, ip in pods:
        text += POD.format(ns=ns, name=name, labels=labels, ip=ip, host="false")
    text += POD.format(ns="default", name="h", labels="{role: db}", ip="198.19.128.1", host="true")
    return text + policies


@pytest.fixture
def check(make_cluster):
    def run(policies, src, dst, port=80, proto="TCP", extra_pods=(), config=None):
        c = make_cluster(world(policies, extra_pods), config)
        conns = Connections()
        if "/" not in src or "/" not in dst:
            s = c.pod_address(src) if "/" in src else src
            d = c.pod_address(dst) if "/" in dst else dst
            v = open_connection_with_ip_addresses(c, conns, s, d, proto, port)
        else:
            v = open_pod_connection(c, conns, c.pods[src], c.pods[dst], proto, port)
        # The matrix must agree with the primitive for pod pairs.
        if "/" in src and "/" in dst and not c.pods[src].host_network and not c.pods[dst].host_network:
            rc = ReachComputer(c)
            m = rc.matrix(proto, port) if proto != "ICMP" else None
            if m is not None:
                keys = [p.key for p in rc.pods]
                assert m.allowed[keys.index(src), keys.index(dst)] == v.allowed
        return v.allowed
    return run


def policy(name="p", ns="default", spec=""):
    return f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
---
"""


DENY_INGRESS = policy("default-deny-ingress", spec="  podSelector: {}\n  policyTypes: [Ingress]")
DENY_EGRESS = policy("default-deny-egress", spec="  podSelector: {}\n  policyTypes: [Egress]")


def test_no_policy_everything_allowed(check):
    assert check("", "default/a", "other/d")
    assert check("", "other/d", "default/a", 53, "UDP")


def test_default_deny_ingress_isolates_only_ingress(check):
    assert not check(DENY_INGRESS, "default/b", "default/a")
    assert check(DENY_INGRESS, "default/a", "other/d")      # egress not isolated


def test_default_deny_egress(check):
    assert not check(DENY_EGRESS, "default/a", "other/d")
    assert check(DENY_EGRESS, "other/d", "default/a")


def test_isolation_is_per_direction_and_both_must_allow(check):
    allow_egress = policy("e", spec="  podSelector: {}\n  egress: [{}]\n  policyTypes: [Egress]")
    assert not check(DENY_INGRESS + allow_egress, "default/b", "default/a")
    assert check(DENY_EGRESS + allow_egress, "default/b", "default/a")
    # Without policyTypes the same policy defaults to [Ingress, Egress] and isolates ingress.
    defaulted = policy("e", spec="  podSelector: {}\n  egress: [{}]")
    assert not check(DENY_EGRESS + defaulted, "default/b", "default/a")


def test_allow_all_ingress_vs_deny_all(check):
    allow_all = policy("allow-all-ingress", spec="  podSelector: {}\n  ingress: [{}]\n  policyTypes: [Ingress]")
    assert check(DENY_INGRESS + allow_all, "other/d", "default/a")
    # ingress: [] isolates and allows nothing (the docs' web-deny-all).
    deny = policy("web-deny-all", spec="  podSelector: {matchLabels: {role: db}}\n  ingress: []")
    assert not check(deny, "default/b", "default/a")
    assert check(deny, "default/a", "default/b")


def test_policy_types_default(check):
    # No policyTypes and egress rules present: Egress is set, so egress is isolated.
    p = policy(spec="  podSelector: {matchLabels: {role: db}}\n  egress: [{to: [{podSelector: {matchLabels: {role: frontend}}}]}]")
    assert check(p, "default/a", "default/b")
    assert not check(p, "default/a", "default/c")
    # Ingress is always set: the selected pod is isolated for ingress, too.
    assert not check(p, "default/b", "default/a")
    # egress: [] without policyTypes does not isolate egress.
    q = policy(spec="  podSelector: {matchLabels: {role: db}}\n  egress: []")
    assert check(q, "default/a", "default/c")


def test_union_of_policies(check):
    p1 = policy("p1", spec="  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]")
    p2 = policy("p2", spec="  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{podSelector: {}}], ports: [{port: 8080}]}]")
    assert check(p1 + p2, "default/b", "default/a", 80)
    assert not check(p1 + p2, "default/c", "default/a", 80)
    assert check(p1 + p2, "default/c", "default/a", 8080)


DOCS_EXAMPLE = policy("test-network-policy", spec="""  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 198.18.0.0/16, except: [198.18.1.0/24]}
    - namespaceSelector: {matchLabels: {project: myproject}}
    - podSelector: {matchLabels: {role: frontend}}
    ports: [{protocol: TCP, port: 6379}]
  egress:
  - to: [{ipBlock: {cidr: 198.19.0.0/24}}]
    ports: [{protocol: TCP, port: 5978}]""")


def test_docs_example_test_network_policy(check):
    assert check(DOCS_EXAMPLE, "default/b", "default/a", 6379)          # podSelector
    assert check(DOCS_EXAMPLE, "other/d", "default/a", 6379)            # namespaceSelector
    assert check(DOCS_EXAMPLE, "default/c", "default/a", 6379)          # ipBlock covers c's pod address
    assert not check(DOCS_EXAMPLE, "default/b", "default/a", 80)        # port
    assert check(DOCS_EXAMPLE, "default/a", "198.19.0.7", 5978)         # egress ipBlock, external
    assert not check(DOCS_EXAMPLE, "default/a", "198.19.1.7", 5978)
    assert not check(DOCS_EXAMPLE, "default/a", "default/b", 6379)      # egress isolated


def test_except_carves_only_its_own_peer(check):
    # 198.18.1.10 (other/d) is in the except, but the namespaceSelector peer of the same
    # rule still admits it; an external address in the except is denied.
    assert check(DOCS_EXAMPLE, "other/d", "default/a", 6379)
    assert not check(DOCS_EXAMPLE, "198.18.1.99", "default/a", 6379)
    assert check(DOCS_EXAMPLE, "198.18.2.99", "default/a", 6379)
    # A second policy can allow what another policy's except carves out.
    other = policy("p2", spec="  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{ipBlock: {cidr: 198.18.1.0/24}}]}]")
    assert check(DOCS_EXAMPLE + other, "198.18.1.99", "default/a", 6379)


def test_namespace_and_pod_selector_together_vs_separately(check):
    both = policy(spec="""  podSelector: {matchLabels: {role: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {project: myproject}}
      podSelector: {matchLabels: {role: frontend}}""")
    either = policy(spec="""  podSelector: {matchLabels: {role: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {project: myproject}}
    - podSelector: {matchLabels: {role: frontend}}""")
    extra = [("other", "e", "{role: backend}", "198.18.1.11")]
    assert check(both, "other/d", "default/a", extra_pods=extra)
    assert not check(both, "other/e", "default/a", extra_pods=extra)
    assert not check(both, "default/b", "default/a", extra_pods=extra)   # pod selector is in myproject only
    assert check(either, "other/e", "default/a", extra_pods=extra)
    assert check(either, "default/b", "default/a", extra_pods=extra)


def test_pod_selector_alone_is_the_policy_namespace(check):
    p = policy(spec="  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]")
    assert check(p, "default/b", "default/a")
    assert not check(p, "other/d", "default/a")


def test_namespace_metadata_name_label(check):
    p = policy(spec="""  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]}]""")
    assert check(p, "other/d", "default/a")
    assert not check(p, "default/b", "default/a")


def test_match_expressions_operators(check):
    def sel(expr):
        return policy(spec=f"  podSelector: {{}}\n  ingress: [{{from: [{{podSelector: {{matchExpressions: [{expr}]}}}}]}}]")
    assert check(sel("{key: role, operator: In, values: [frontend, x]}"), "default/b", "default/a")
    assert not check(sel("{key: role, operator: In, values: [x]}"), "default/b", "default/a")
    assert not check(sel("{key: role, operator: NotIn, values: [frontend]}"), "default/b", "default/a")
    assert check(sel("{key: role, operator: NotIn, values: [frontend]}"), "default/c", "default/a")  # key absent
    assert check(sel("{key: role, operator: Exists}"), "default/b", "default/a")
    assert not check(sel("{key: role, operator: Exists}"), "default/c", "default/a")
    assert check(sel("{key: role, operator: DoesNotExist}"), "default/c", "default/a")
    both = policy(spec="  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {role: frontend}, matchExpressions: [{key: role, operator: NotIn, values: [frontend]}]}}]}]")
    assert not check(both, "default/b", "default/a")        # ANDed


def test_ports_named_range_protocol_default(check):
    named = policy(spec="  podSelector: {}\n  ingress: [{ports: [{port: http}]}]")
    assert check(named, "default/b", "default/a", 80)
    assert not check(named, "default/b", "default/a", 8080)
    assert not check(named, "default/b", "default/a", 80, "UDP")        # protocol defaults to TCP
    udp_named = policy(spec="  podSelector: {}\n  ingress: [{ports: [{port: dns, protocol: UDP}]}]")
    assert check(udp_named, "default/b", "default/a", 53, "UDP")
    assert not check(udp_named, "default/b", "default/a", 53, "TCP")
    rng = policy(spec="  podSelector: {}\n  ingress: [{ports: [{port: 32000, endPort: 32768}]}]")
    assert check(rng, "default/b", "default/a", 32768)
    assert not check(rng, "default/b", "default/a", 32769)
    proto_only = policy(spec="  podSelector: {}\n  ingress: [{ports: [{protocol: SCTP}]}]")
    assert check(proto_only, "default/b", "default/a", 9999, "SCTP")
    assert not check(proto_only, "default/b", "default/a", 9999, "TCP")


def test_named_port_egress_resolves_against_destination(check):
    extra = [("default", "z", "{role: odd}", "198.18.0.20")]
    p = policy(spec="  podSelector: {matchLabels: {role: frontend}}\n  egress: [{ports: [{port: http}]}]\n  policyTypes: [Egress]")
    assert check(p, "default/b", "default/a", 80, extra_pods=extra)
    assert not check(p, "default/b", "default/a", 8080, extra_pods=extra)
    # An external destination has no named ports.
    assert not check(p, "default/b", "198.19.0.9", 80, extra_pods=extra)


def test_peer_matching_no_pod_allows_nothing(check):
    # A classic fail-open: a selector matching nothing must not become "allow all".
    p = policy(spec="  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {role: nobody}}}]}]")
    assert not check(p, "default/b", "default/a")
    q = policy(spec="  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {project: none}}}]}]")
    assert not check(q, "other/d", "default/a")
    # Without any peer in the rule (from missing), everyone is allowed.
    r = policy(spec="  podSelector: {}\n  ingress: [{ports: [{port: 80}]}]")
    assert check(r, "other/d", "default/a")


def test_ipblock_matches_pod_addresses_egress(check):
    # The upstream suite requires egress to a pod's /32 to work.
    p = policy(spec="  podSelector: {matchLabels: {role: frontend}}\n  egress: [{to: [{ipBlock: {cidr: 198.18.0.10/32}}]}]\n  policyTypes: [Egress]")
    assert check(p, "default/b", "default/a")
    assert not check(p, "default/b", "default/c")


def test_ipv6_ipblock_with_except(check):
    extra = [("default", "v6", "{role: six}", "2001:db8::10")]
    p = policy(spec="""  podSelector: {matchLabels: {role: six}}
  ingress: [{from: [{ipBlock: {cidr: "2001:db8:f::/48", except: ["2001:db8:f:1::/64"]}}]}]""")
    assert check(p, "2001:db8:f::1", "default/v6", extra_pods=extra)
    assert not check(p, "2001:db8:f:1::1", "default/v6", extra_pods=extra)
    assert not check(p, "198.18.9.9", "default/v6", extra_pods=extra)


def test_host_network_pods_are_node_addresses(check):
    # Never selected, even if its labels match; not matched by pod selectors.
    assert check(DENY_INGRESS, "default/b", "default/h")
    p = policy(spec="  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {role: db}}}]}]")
    strict = ClusterConfig(police_node_traffic=True)
    assert not check(p, "default/h", "default/b", config=strict)
    node = policy(spec="  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 198.19.128.0/24}}]}]")
    assert check(node, "default/h", "default/b", config=strict)


def test_the_resident_node_always_reaches_its_pods(check):
    """Pods cannot block access from their node (kubelet probes): its address and its
    hostNetwork pods reach them under any policy, unless --police-node-traffic."""
    deny_all = policy(spec="  podSelector: {}\n  policyTypes: [Ingress, Egress]")
    assert check(deny_all, "default/h", "default/b")
    assert check(deny_all, "198.19.128.1", "default/a")
    assert check(deny_all, "198.19.128.1", "default/a", 0, "ICMP")
    strict = ClusterConfig(police_node_traffic=True)
    assert not check(deny_all, "default/h", "default/b", config=strict)
    assert not check(deny_all, "198.19.128.1", "default/a", config=strict)
    # Not the other way: a pod's egress to its node is policed like any address.
    assert not check(deny_all, "default/b", "default/h")
    # Another node's address is an address like any other.
    assert not check(deny_all, "198.19.200.1", "default/a")


def test_self_traffic_is_not_policed(check):
    deny_all = policy(spec="  podSelector: {}\n  policyTypes: [Ingress, Egress]")
    assert check(deny_all, "default/a", "default/a")


def test_icmp_only_allowed_by_rules_without_ports(check):
    all_ports = policy(spec="  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]")
    assert check(all_ports, "default/b", "default/a", 0, "ICMP")
    tcp_only = policy(spec="  podSelector: {}\n  ingress: [{ports: [{protocol: TCP}]}]")
    assert not check(tcp_only, "default/b", "default/a", 0, "ICMP")


def test_external_to_external_is_not_a_cluster_connection(check):
    assert not check("", "198.19.0.1", "198.19.0.2")


def test_explanation_names_policies_and_rule(make_cluster):
    c = make_cluster(world(DOCS_EXAMPLE))
    v = open_pod_connection(c, Connections(), c.pods["default/b"], c.pods["default/a"], "TCP", 6379)
    assert v.allowed and v.connection_id > 0
    assert v.ingress.policies == ["default/test-network-policy"]
    assert str(v.ingress.rule) == "default/test-network-policy ingress[0]"
    assert v.egress.isolated is False
    denied = open_pod_connection(c, Connections(), c.pods["default/b"], c.pods["default/a"], "TCP", 1)
    assert not denied.allowed and denied.connection_id == 0 and denied.ingress.rule is None
    assert "no rule allows it" in denied.explain()
