"""Networks that meet and networks that do not (issue 9, 004's "type 1" and "type 2"):
two networks of one IP address domain kept apart in C and in the oracle, or declared
routable (`routableNetworks`) with each end policed on its own network; Services
reached from the cluster network only; the prefixes a pod routes per network."""

import textwrap

import pytest

from pipeline.load.build import load_cluster
from pipeline.load.errors import ManifestErrors
from pipeline.model.connections import Connections, open_connection_with_ip_addresses

from .test_networks import MNP, NADS, cluster, pod


GREEN = """
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {{name: {name}, namespace: lab}}
spec:
  config: '{{"name": "{name}-net", "type": "ipvlan", "ipAddressDomain": "lab"{extra}}}'
"""


def lab(routable=""):
    """red and green: two networks of one domain, routable to each other or not."""
    extra = f', "routableNetworks": ["{routable}"]' if routable else ""
    return (GREEN.format(name="red", extra=extra) + GREEN.format(name="green", extra="") +
            pod("a", '[{"name": "red", "ips": ["198.18.110.1"]}]') +
            pod("c", '[{"name": "red", "ips": ["198.18.110.3"]}]') +
            pod("b", '[{"name": "green", "ips": ["198.18.110.2"]}]'))


def test_two_networks_of_one_domain_never_meet_unless_declared_routable():
    """004 type 2 by default: the address is found in the domain, but the network it is
    on is not the sender's; nor has a secondary network a way out. Type 1 on request."""
    from scapy.all import IP, TCP

    from .packets import ether
    from .test_regressions import Both

    def syn(dst, src="198.18.110.1"):
        return ether() / IP(src=src, dst=dst) / TCP(sport=7, dport=80, flags="S")
    apart = Both(textwrap.dedent(lab()))
    port = {str(a): a.port for a in apart.cluster.plane.attachments()}
    assert apart.run(syn("198.18.110.2"), port["lab/a/net1"]).reason == "network_unreachable"
    assert apart.run(syn("198.18.110.3"), port["lab/a/net1"]).reason == "new"            # red to red
    assert apart.run(syn("198.18.111.9"), port["lab/a/net1"]).reason == "network_unreachable"  # no way out
    # its own address on another network is its own: never kept from itself
    v = open_connection_with_ip_addresses(apart.cluster, Connections(), "198.18.110.1", "198.18.110.1",
                                          "TCP", 80, "lab", "lab")
    assert v.allowed and not v.apart
    met = Both(textwrap.dedent(lab(routable="green-net")))
    assert met.cluster.networks_meet("green-net", "red-net")                 # declared once, both ways
    r = met.run(syn("198.18.110.2"), port["lab/a/net1"])
    assert (r.reason, r.out_port) == ("new", port["lab/b/net1"])
    back = met.run(ether() / IP(src="198.18.110.2", dst="198.18.110.3") / TCP(sport=9, dport=80, flags="S"),
                   port["lab/b/net1"])
    assert back.reason == "new"
    assert met.run(syn("198.18.111.9"), port["lab/a/net1"]).reason == "network_unreachable"


def test_across_routable_networks_each_end_is_policed_on_its_own_network_by_address():
    """green's MultiNetworkPolicy selects b; a podSelector peer does not see a (a is not
    on green), an ipBlock over red's addresses does."""
    from scapy.all import IP, TCP

    from .packets import ether
    from .test_regressions import Both
    by_pod = "  ingress:\n  - from: [{podSelector: {matchLabels: {app: a}}}]"
    by_block = "  ingress:\n  - from: [{ipBlock: {cidr: 198.18.110.0/31}}]"
    syn = ether() / IP(src="198.18.110.1", dst="198.18.110.2") / TCP(sport=7, dport=80, flags="S")
    for rules, reason in ((by_pod, "denied_ingress"), (by_block, "new")):
        both = Both(textwrap.dedent(lab(routable="green-net") +
                                    MNP.format(version="v1beta1", name="b-in", policy_for="green", spec=rules)))
        port = {str(a): a.port for a in both.cluster.plane.attachments()}
        assert both.run(syn, port["lab/a/net1"]).reason == reason
        v = open_connection_with_ip_addresses(both.cluster, Connections(), "198.18.110.1", "198.18.110.2",
                                              "TCP", 80, "lab", "lab")
        assert v.ingress.policies == ["lab/b-in"] and v.allowed == (reason == "new")


def test_routable_networks_must_share_a_domain(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(textwrap.dedent(NADS).replace('"type": "macvlan", "ipAddressDomain": "red"',
                                               '"type": "macvlan", "routableNetworks": ["blue-net"], '
                                               '"ipAddressDomain": "red"'))
    with pytest.raises(ManifestErrors) as e:
        load_cluster([str(f)])
    assert any(m.startswith(f"{f}:0:spec.config: Invalid value: routableNetworks: networks 'red-net' and "
                            f"'blue-net' are in different IP address domains") for m in map(str, e.value.errors)), \
        e.value.errors


def test_services_are_reached_from_the_cluster_network_only_unless_routable():
    """A network in the cluster's own domain sees the VIP's address, but the backend is
    on the cluster network: network_unreachable, unless declared routable to it."""
    from scapy.all import IP, TCP

    from .packets import ether
    from .test_regressions import Both
    svc = ("---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: lab}\n"
           "spec: {selector: {app: b}, clusterIP: 198.19.0.10, ports: [{port: 80}]}\n")
    side = ("---\napiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n"
            "metadata: {name: side, namespace: lab}\nspec:\n  config: '{\"name\": \"side-net\"%s}'\n")
    pods = pod("a", '[{"name": "side", "ips": ["198.18.120.1"]}]') + pod("b")
    syn = ether() / IP(src="198.18.120.1", dst="198.19.0.10") / TCP(sport=7, dport=80, flags="S")
    for extra, reason in (("", "network_unreachable"), (', "routableNetworks": ["cluster"]', "new")):
        both = Both(textwrap.dedent(side % extra + pods + svc))
        port = {str(a): a.port for a in both.cluster.plane.attachments()}
        r = both.run(syn, port["lab/a/net1"])
        assert r.reason == reason
        if reason == "new":
            assert r.out_port == port["lab/b"] and r.rewrite


def test_a_pod_routes_its_networks_prefixes_and_those_of_networks_routable_to_them():
    from pipeline.model.networks import network_prefixes
    red = [str(n) for n in network_prefixes(cluster(NADS + pod("a", "red")), "red-net")]
    assert red == ["198.18.100.0/24"]                                     # the IPAM subnet
    met = cluster(lab(routable="green-net"))                              # static addresses only
    assert [str(n) for n in network_prefixes(met, "red-net")] == \
        ["198.18.110.1/32", "198.18.110.2/32", "198.18.110.3/32"]
    assert [str(n) for n in network_prefixes(cluster(lab()), "green-net")] == ["198.18.110.2/32"]
