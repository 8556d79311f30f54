"""Random clusters for property tests: namespaces, pods with random labels and ports,
and policies using every feature of NetworkPolicy v1."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import strategies as st

from pipeline.model.admin import ADMIN, ANP, BANP, BASELINE, CNP, AdminPeer, AdminPolicy, AdminPort, AdminRule, PodSet
from pipeline.model.cluster import Cluster
from pipeline.model.addresses import DEFAULT_DOMAIN, DEFAULT_NETWORK
from pipeline.model.objects import (ContainerPort, IPBlock, MultiNetworkPolicy, Namespace,
                                    NetworkAttachmentDefinition, NetworkPolicy, Node, Peer, Pod, PolicyPort, Rule,
                                    Service, ServicePort)
from pipeline.model.selectors import LabelSelector, Requirement

NAMESPACES = ["ns-a", "ns-b", "ns-c"]
KEYS = ["app", "tier"]
VALUES = ["x", "y", "z"]
PORTS = [ContainerPort(80, "TCP", "http"), ContainerPort(81, "TCP", "web"),
         ContainerPort(53, "UDP", "dns"), ContainerPort(90, "SCTP", "sig"),
         ContainerPort(8080, "TCP", "web2")]
# Blocks over the pod ranges (198.18.0.0/24 v4 and 2001:db8::/120 v6) and outside.
# IPv4-mapped IPv6 CIDRs must never match IPv4 traffic (nor break the compiler).
CIDRS = ["198.18.0.0/24", "198.18.0.0/28", "198.18.0.16/28", "198.18.0.8/29", "198.18.0.0/16",
         "198.19.0.0/24", "2001:db8::/120", "2001:db8::/124", "0.0.0.0/0", "::/0",
         "::ffff:198.18.0.0/120", "::ffff:0:0/96", "198.19.128.0/24"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


@st.composite
def selectors(draw):
    reqs = []
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True)):
        op = draw(st.sampled_from(["In", "In", "NotIn", "Exists", "DoesNotExist"]))
        values = tuple(sorted(draw(st.sets(st.sampled_from(VALUES), min_size=1, max_size=2)))) \
            if op in ("In", "NotIn") else ()
        reqs.append(Requirement(key, op, values))
    return LabelSelector(tuple(reqs))


@st.composite
def ip_blocks(draw):
    cidr = ipaddress.ip_network(draw(st.sampled_from(CIDRS)))
    excepts = []
    # Several excepts, often nested in one another (an except inside an except).
    for e in draw(st.lists(st.sampled_from(CIDRS), max_size=3)):
        net = ipaddress.ip_network(e)
        if net.version == cidr.version and net.subnet_of(cidr) and net.prefixlen > cidr.prefixlen:
            excepts.append(net)
    if draw(st.integers(0, 9)) < 7 and cidr.prefixlen < (32 if cidr.version == 4 else 128) - 2:
        # Single-address excepts, mostly pods' addresses (pods are .1 to .6): what an
        # except is for, and what a compiler that forgets it gets wrong.
        for host in draw(st.sets(st.integers(1, 8), min_size=1, max_size=2)):
            excepts.append(ipaddress.ip_network(f"{cidr.network_address + host}/{cidr.max_prefixlen}"))
    return IPBlock(cidr, tuple(sorted(set(excepts), key=str)))


@st.composite
def peers(draw):
    kind = draw(st.sampled_from(["pod", "ns", "both", "ip"]))
    if kind == "ip":
        return Peer(ip_block=draw(ip_blocks()))
    return Peer(pod_selector=draw(selectors()) if kind in ("pod", "both") else None,
                namespace_selector=draw(selectors()) if kind in ("ns", "both") else None)


@st.composite
def policy_ports(draw):
    proto = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP"]))
    kind = draw(st.sampled_from(["num", "named", "range", "none"]))
    if kind == "num":
        return PolicyPort(proto, draw(st.sampled_from([53, 80, 81, 90, 8080])))
    if kind == "named":
        return PolicyPort(proto, draw(st.sampled_from(["http", "web", "dns", "sig", "web2"])))
    if kind == "range":
        lo = draw(st.sampled_from([50, 80, 81]))
        return PolicyPort(proto, lo, lo + draw(st.integers(0, 40)))
    return PolicyPort(proto)


@st.composite
def rules(draw):
    ps = draw(st.one_of(st.none(), st.lists(peers(), min_size=1, max_size=2)))
    pts = draw(st.one_of(st.none(), st.lists(policy_ports(), min_size=1, max_size=2)))
    return Rule(None if ps is None else tuple(ps), None if pts is None else tuple(pts))


@st.composite
def policies(draw, name):
    types = draw(st.sampled_from([("Ingress",), ("Egress",), ("Ingress", "Egress")]))
    return NetworkPolicy(draw(st.sampled_from(NAMESPACES)), name, draw(selectors()), types,
                         tuple(draw(st.lists(rules(), max_size=2))),
                         tuple(draw(st.lists(rules(), max_size=2))))


VIP4, VIP6 = "198.19.0.100", "2001:db8:2::100"
SERVICE_PORTS = (ServicePort(80, "TCP", "a"), ServicePort(81, "TCP", "b", "web"),
                 ServicePort(53, "UDP", "c", "dns"), ServicePort(53, "TCP", "d", 5353),
                 ServicePort(90, "SCTP", "e", "sig"))


@st.composite
def clusters(draw, max_pods=6, max_policies=4, dual_stack=True, cluster_wide_policies=None):
    """Namespaces, pods (dual stack, hostNetwork, finished ones holding a running pod's
    old address), a Service and policies."""
    c = Cluster()
    for ns in NAMESPACES:
        c.add_namespace(Namespace(ns, draw(st.dictionaries(st.just("team"), st.sampled_from(VALUES), max_size=1))))
    n = draw(st.integers(1, max_pods))
    for i in range(n):
        ips = [ipaddress.ip_address(f"198.18.0.{i + 1}")]
        if dual_stack and draw(st.booleans()):
            ips.append(ipaddress.ip_address(f"2001:db8::{i + 1:x}"))
        ports = tuple(sorted(draw(st.sets(st.sampled_from(range(len(PORTS))), max_size=3))))
        c.add_pod(Pod(draw(st.sampled_from(NAMESPACES)), f"pod-{i}", draw(labels_st),
                      tuple(PORTS[p] for p in ports),
                      host_network=draw(st.integers(0, 9)) == 0, ips=tuple(ips),
                      ready=draw(st.integers(0, 3)) != 0))
    for i in range(draw(st.integers(0, 2))):
        # Finished: a Job's pod whose address a running pod may have taken since.
        reused = draw(st.integers(1, n + 2))
        c.add_pod(Pod(draw(st.sampled_from(NAMESPACES)), f"done-{i}", draw(labels_st), (),
                      ips=(ipaddress.ip_address(f"198.18.0.{reused}"),), phase=draw(st.sampled_from(["Succeeded", "Failed"]))))
    if draw(st.booleans()):
        # Ports by number and by name (pods without the name back no such port), one
        # number on two protocols; pods not ready back nothing new.
        node_ports = draw(st.booleans())
        c.add_service(Service("ns-a", "svc", {"app": "x"},
                              tuple(replace(p, node_port=30000 + i) for i, p in enumerate(SERVICE_PORTS))
                              if node_ports else SERVICE_PORTS,
                              (ipaddress.ip_address(VIP4), ipaddress.ip_address(VIP6)),
                              type="NodePort" if node_ports else "ClusterIP",
                              publish_not_ready=draw(st.integers(0, 4)) == 0,
                              session_affinity=draw(st.sampled_from(["None", "ClientIP"]))))
    for j in range(draw(st.integers(0, max_policies))):
        c.add_network_policy(draw(policies(f"pol-{j}")))
    if draw(st.integers(0, 2)) == 0:
        secondary_networks(draw, c)
    if cluster_wide_policies or (cluster_wide_policies is None and draw(st.integers(0, 2)) == 0):
        cluster_wide(draw, c)
    return c


@st.composite
def admin_peers(draw, egress: bool):
    kind = draw(st.sampled_from(["namespaces", "pods"] + (["nodes", "networks"] if egress else [])))
    if kind == "namespaces":
        return AdminPeer(pods=PodSet(draw(ns_selectors())))
    if kind == "pods":
        return AdminPeer(pods=PodSet(draw(ns_selectors()), draw(selectors())))
    if kind == "nodes":
        return AdminPeer(nodes=LabelSelector(draw(st.sampled_from([(), (Requirement("zone", "In", ("x",)),)]))))
    nets = draw(st.sets(st.sampled_from(CIDRS), min_size=1, max_size=2))
    return AdminPeer(networks=tuple(sorted((ipaddress.ip_network(n) for n in nets), key=str)))


@st.composite
def ns_selectors(draw):
    return LabelSelector(draw(st.sampled_from([(), (Requirement("team", "In", ("x",)),),
                                               (Requirement("team", "NotIn", ("y",)),)])))


@st.composite
def admin_ports(draw, named_ok: bool):
    k = draw(st.sampled_from(["number", "range"] + (["named"] if named_ok else [])))
    proto = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
    if k == "named":
        return AdminPort(None, name=draw(st.sampled_from(["http", "web", "dns", "sig"])))
    lo = draw(st.sampled_from([53, 80, 81, 90]))
    return AdminPort(proto, lo, lo + draw(st.integers(0, 20)) if k == "range" else None)


@st.composite
def admin_rules(draw, egress: bool, actions):
    ps = tuple(draw(st.lists(admin_peers(egress), min_size=1, max_size=2)))
    named_ok = all(p.pods is not None for p in ps)
    ports = None if draw(st.booleans()) else tuple(draw(st.lists(admin_ports(named_ok), min_size=1, max_size=2)))
    return AdminRule("", draw(st.sampled_from(actions)), ps, ports)


def cluster_wide(draw, c: Cluster) -> None:
    """Nodes (labelled, one of them the pods' node) and cluster-wide policies of both
    tiers, in all three kinds, at few priorities (ties too), every action."""
    for name, ip in (("node", "198.19.128.1"), ("node-2", "198.19.128.2")):
        c.add_node(Node(name, draw(st.dictionaries(st.just("zone"), st.sampled_from(VALUES), max_size=1)),
                        (ipaddress.ip_address(ip),)))
    for j in range(draw(st.integers(1, 3))):
        tier = draw(st.sampled_from([ADMIN, BASELINE]))
        kind = draw(st.sampled_from([CNP, ANP if tier == ADMIN else BANP]))
        actions = ["Allow", "Deny"] + (["Pass"] if kind != BANP else [])
        subject = PodSet(draw(ns_selectors()), draw(st.none() | selectors()))
        c.add_admin_policy(AdminPolicy(
            kind, "default" if kind == BANP else f"cnp-{j}", tier, draw(st.sampled_from([1, 2])), subject,
            tuple(draw(st.lists(admin_rules(False, actions), max_size=2))),
            tuple(draw(st.lists(admin_rules(True, actions), max_size=2)))))


def secondary_networks(draw, c: Cluster) -> None:
    """Networks red and blue, each in the cluster's domain or in "other" (so two
    networks of one domain, and addresses that repeat another domain's), sometimes
    routable to each other or to the cluster network; running pods attached to them
    (some to both), and MultiNetworkPolicies for them."""
    nets = {}
    for name in ("red", "blue"):
        domain = draw(st.sampled_from([DEFAULT_DOMAIN, "other"]))
        nets[name] = c.add_network_attachment_definition(
            NetworkAttachmentDefinition("ns-a", name, name, domain)).domain
    domain_of = dict(nets, **{DEFAULT_NETWORK: DEFAULT_DOMAIN})
    pairs = [(a, b) for a, b in (("red", "blue"), ("red", DEFAULT_NETWORK), ("blue", DEFAULT_NETWORK))
             if domain_of[a] == domain_of[b]]
    if pairs and draw(st.booleans()):
        c.declare_routable(*draw(st.sampled_from(pairs)))
    # In the cluster's domain the networks take 198.18.1.x (red) and 198.18.2.x
    # (blue); in "other", red repeats the eth0 addresses 198.18.0.x and blue, when it
    # shares "other" with red, takes 198.18.2.x.
    third = {"red": 0 if nets["red"] != DEFAULT_DOMAIN else 1,
             "blue": 2 if nets["blue"] == nets["red"] or nets["blue"] == DEFAULT_DOMAIN else 0}
    running = [p for p in sorted(c.pods) if not c.pods[p].finished and not c.pods[p].host_network]
    for i, key in enumerate(running):
        on = draw(st.sampled_from([(), ("red",), ("blue",), ("red", "blue")]))
        for k, name in enumerate(on):
            ip = ipaddress.ip_address(f"198.18.{third[name]}.{i + 1}")
            c.plane.add_address_to_pod_mapping(nets[name], ip, key, f"net{k + 1}", name,
                                               node=c.plane.attachment(key).node)
    for j in range(draw(st.integers(0, 2))):
        pol = draw(policies(f"mnp-{j}"))
        net = draw(st.sampled_from(["red", "blue"]))
        c.add_multi_network_policy(MultiNetworkPolicy(
            pol.namespace, pol.name, pol.pod_selector, pol.policy_types, pol.ingress, pol.egress,
            policy_for=(("ns-a", net),), networks=(net,)))
