"""Secondary networks in the model and the loader (issue 9, first part): Network-
AttachmentDefinitions and their IP address domains, pods' attachments by annotation
in both forms and by network-status, the same address in two domains as two pods,
load errors as file:doc:field, and what the model says across and on networks."""

import io
import ipaddress
import textwrap

import pytest

from pipeline.cli import main
from pipeline.load.build import load_cluster
from pipeline.load.errors import ManifestErrors
from pipeline.model.addresses import Attachment
from pipeline.model.connections import Connections, open_connection_with_ip_addresses

NADS = """
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: red, namespace: lab}
spec:
  config: '{"name": "red-net", "type": "macvlan", "ipAddressDomain": "red", "ipam": {"type": "host-local", "subnet": "198.18.100.0/24"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: blue, namespace: lab}
spec:
  config: '{"name": "blue-net", "type": "macvlan", "ipAddressDomain": "blue", "ipam": {"type": "whereabouts", "range": "198.18.100.0/24"}}'
"""


def pod(name, networks="", status=""):
    ann = ""
    if networks or status:
        ann = "\n  annotations:"
        if networks:
            ann += f"\n    k8s.v1.cni.cncf.io/networks: '{networks}'"
        if status:
            ann += f"\n    k8s.v1.cni.cncf.io/network-status: '{status}'"
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: lab\n"
            f"  labels: {{app: {name}}}{ann}\nspec: {{containers: [{{name: c}}]}}\n")


def cluster(text):
    c, _ = load_cluster(["-"], stdin=io.StringIO(textwrap.dedent(text)))
    return c


def at(c, domain, ip):
    return c.plane.lookup(domain, ipaddress.ip_address(ip))


def test_attachments_by_both_annotation_forms_and_by_network_status():
    status = '[{"name": "cbr0", "interface": "eth0", "ips": ["198.18.0.9"], "default": true},' \
             ' {"name": "lab/blue", "interface": "net7", "ips": ["198.18.100.77"]}]'
    c = cluster(NADS + pod("a", "red@net1, lab/blue") +
                pod("b", '[{"name": "blue", "interface": "net7", "ips": ["198.18.100.5/24"]}]', status) +
                pod("c", '[{"name": "red", "namespace": "lab", "ips": ["198.18.100.1"]}]'))
    assert at(c, "blue", "198.18.100.77") == Attachment("lab/b", "net7", "blue-net", "blue",
                                                        at(c, "blue", "198.18.100.77").port, "node")
    assert at(c, "blue", "198.18.100.5") is None            # network-status wins over the request
    # c asked for .1 on red: reserved before a's allocation, which takes the next one
    assert at(c, "red", "198.18.100.1").pod == "lab/c"
    a1, a2 = at(c, "red", "198.18.100.2"), at(c, "blue", "198.18.100.1")
    assert (a1.pod, a1.interface, a1.network, a2.pod, a2.interface) == ("lab/a", "net1", "red-net", "lab/a", "net2")


def test_the_same_address_in_two_domains_is_two_pods_and_in_one_domain_an_error():
    c = cluster(NADS + pod("a", '[{"name": "red", "ips": ["198.18.100.9"]}]') +
                pod("b", '[{"name": "blue", "ips": ["198.18.100.9"]}]'))
    assert at(c, "red", "198.18.100.9").pod == "lab/a" and at(c, "blue", "198.18.100.9").pod == "lab/b"
    with pytest.raises(ManifestErrors) as e:
        cluster(NADS + pod("a", '[{"name": "red", "ips": ["198.18.100.9"]}]') +
                pod("b", '[{"name": "red", "ips": ["198.18.100.9"]}]'))
    assert "-:3:metadata.annotations[k8s.v1.cni.cncf.io/networks][0]: Duplicate value: address " \
           "198.18.100.9" in str(e.value.errors[0])


def test_definitions_sharing_a_network_name_are_one_network_in_one_domain():
    other = NADS.replace("name: blue, namespace: lab", "name: blue2, namespace: lab") \
        .replace('"name": "blue-net", "type": "macvlan", "ipAddressDomain": "blue"',
                 '"name": "red-net", "type": "macvlan", "ipAddressDomain": "red"')
    c = cluster(other)
    assert set(c.networks) == {"cluster", "red-net"}
    with pytest.raises(ManifestErrors) as e:
        cluster(other.replace('"ipAddressDomain": "red", "ipam": {"type": "whereabouts"',
                              '"ipAddressDomain": "green", "ipam": {"type": "whereabouts"'))
    assert "-:0:spec.config: Invalid value: network 'red-net' is in IP address domain 'green', not 'red'" \
        in str(e.value.errors[0])


@pytest.mark.parametrize("text,field,message", [
    (NADS.replace("config: '{", "config: '{{") , "spec.config", "not JSON"),
    (NADS + pod("a", "nosuch"), "metadata.annotations[k8s.v1.cni.cncf.io/networks][0]",
     "Not found: network attachment definition lab/nosuch"),
    (NADS + pod("a", "red@net1,blue@net1"), "metadata.annotations[k8s.v1.cni.cncf.io/networks][1].interface",
     "Duplicate value: 'net1'"),
    (NADS + pod("a", '[{"name": "red", "ips": ["not-an-ip"]}]'),
     "metadata.annotations[k8s.v1.cni.cncf.io/networks][0].ips[0]", "an IP address"),
])
def test_bad_network_input_is_named_by_field_and_nothing_is_applied(tmp_path, capsys, text, field, message):
    f = tmp_path / "m.yaml"
    f.write_text(textwrap.dedent(text))
    assert main(["reach", "-f", str(f), "--port", "80"]) == 2
    err = capsys.readouterr().err
    assert f":{field}: " in err and message in err and "nothing applied" in err and "Traceback" not in err


def test_networks_are_isolated_and_network_policies_stay_on_the_cluster_network():
    deny = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: lab}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"""
    c = cluster(NADS + pod("a", '[{"name": "red", "ips": ["198.18.100.9"]}]') +
                pod("b", '[{"name": "red", "ips": ["198.18.100.10"]}, {"name": "blue", "ips": ["198.18.100.9"]}]')
                + deny)

    def verdict(src, sd, dst, dd):
        return open_connection_with_ip_addresses(c, Connections(), src, dst, "TCP", 80, sd, dd)
    on_red = verdict("198.18.100.9", "red", "198.18.100.10", "red")
    assert on_red.allowed and not on_red.egress.isolated and not on_red.ingress.isolated
    across = verdict("198.18.100.9", "red", "198.18.100.9", "blue")         # same address, other pod
    assert not across.allowed and any("never crosses between them" in n for n in across.notes) and across.apart
    a0, b0 = (str(c.pod_address(k)) for k in ("lab/a", "lab/b"))
    assert not verdict(a0, "cluster", b0, "cluster").allowed                  # the cluster network: denied


def test_the_same_address_on_two_networks_reaches_two_pods_in_c_and_in_the_oracle():
    from scapy.all import IP, TCP

    from .packets import ether
    from .test_regressions import Both
    text = textwrap.dedent(NADS + pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}]') +
                           pod("c", '[{"name": "red", "ips": ["198.18.100.2"]}]') +
                           pod("b", '[{"name": "blue", "ips": ["198.18.100.1"]}]') +
                           pod("d", '[{"name": "blue", "ips": ["198.18.100.2"]}]'))
    both = Both(text)
    port = {str(a): a.port for a in both.cluster.plane.attachments()}
    syn = ether() / IP(src="198.18.100.1", dst="198.18.100.2") / TCP(sport=5, dport=80, flags="S")
    on_red, on_blue = both.run(syn, port["lab/a/net1"]), both.run(syn, port["lab/b/net1"])
    assert (on_red.reason, on_red.out_port, on_blue.reason, on_blue.out_port) == \
        ("new", port["lab/c/net1"], "new", port["lab/d/net1"])
    assert on_red.zone != on_blue.zone
    # b's address on blue is no source on red's ports: the zone is the arrival port's
    assert both.run(syn, port["lab/c/net1"]).reason == "spoofed_source"


MNP = """
---
apiVersion: k8s.cni.cncf.io/{version}
kind: MultiNetworkPolicy
metadata:
  name: {name}
  namespace: lab
  annotations: {{k8s.v1.cni.cncf.io/policy-for: "{policy_for}"}}
spec:
  podSelector: {{matchLabels: {{app: b}}}}
{spec}
"""


def test_multi_network_policies_isolate_only_the_networks_they_are_for():
    pods = (pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}, {"name": "blue", "ips": ["198.18.100.1"]}]') +
            pod("b", '[{"name": "red", "ips": ["198.18.100.2"]}, {"name": "blue", "ips": ["198.18.100.2"]}]') +
            pod("c", '[{"name": "red", "ips": ["198.18.100.3"]}]'))
    # ingress to b on red: only from app=c, or from 198.18.100.1/32 on TCP/22 (an ipBlock on red)
    rules = ("  ingress:\n  - from: [{podSelector: {matchLabels: {app: c}}}]\n"
             "  - from: [{ipBlock: {cidr: 198.18.100.1/32}}]\n    ports: [{port: 22}]")
    for version, policy_for in (("v1beta1", "red"), ("v1beta2", "lab/red")):
        c = cluster(NADS + pods + MNP.format(version=version, name="b-in", policy_for=policy_for, spec=rules))

        def verdict(src, dst, domain, port=80):
            return open_connection_with_ip_addresses(c, Connections(), src, dst, "TCP", port, domain, domain)
        red = verdict("198.18.100.1", "198.18.100.2", "red")
        assert not red.allowed and red.ingress.policies == ["lab/b-in"], red.explain()
        assert verdict("198.18.100.3", "198.18.100.2", "red").allowed               # app=c
        assert verdict("198.18.100.1", "198.18.100.2", "red", 22).allowed           # the ipBlock, on red
        assert verdict("198.18.100.1", "198.18.100.2", "blue").allowed              # blue: not for it
        a0, b0 = (str(c.pod_address(k)) for k in ("lab/a", "lab/b"))
        assert verdict(a0, b0, "cluster").allowed                                   # the cluster network
    # no policy-for: for no network; a NetworkPolicy does not isolate on red
    deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: lab}\n" \
           "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n"
    c = cluster(NADS + pods + MNP.format(version="v1beta2", name="x", policy_for="", spec="  ingress: []") + deny)
    assert open_connection_with_ip_addresses(c, Connections(), "198.18.100.1", "198.18.100.2", "TCP", 80,
                                             "red", "red").allowed


def test_multi_network_policy_types_are_inferred_from_the_rule_lists_present():
    """As multi-networkpolicy-iptables: a list present and not empty gives its type."""
    pods = (pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}]') +
            pod("b", '[{"name": "red", "ips": ["198.18.100.2"]}]'))
    empty = cluster(NADS + pods + MNP.format(version="v1beta2", name="out", policy_for="red",
                                             spec="  egress: []\n  ingress: []"))
    assert empty.multi_policies["lab/out"].policy_types == ()                       # isolates nothing
    only_22 = "  egress: [{ports: [{port: 22}]}]"
    c = cluster(NADS + pods + MNP.format(version="v1beta2", name="out", policy_for="red", spec=only_22))
    pol = c.multi_policies["lab/out"]
    assert pol.policy_types == ("Egress",) and pol.networks == ("red-net",)
    v = open_connection_with_ip_addresses(c, Connections(), "198.18.100.2", "198.18.100.1", "TCP", 80, "red", "red")
    assert not v.allowed and v.egress.policies == ["lab/out"]
    v = open_connection_with_ip_addresses(c, Connections(), "198.18.100.1", "198.18.100.2", "TCP", 80, "red", "red")
    assert v.allowed and not v.ingress.isolated                                     # no Ingress type
    with pytest.raises(ManifestErrors) as e:
        cluster(NADS + pods + MNP.format(version="v1beta1", name="x", policy_for="nosuch", spec="  egress: []"))
    assert "metadata.annotations[k8s.v1.cni.cncf.io/policy-for][0]: Not found" in str(e.value.errors[0])


def test_verdict_and_reach_on_one_network_from_the_command_line(tmp_path, capsys):
    import json
    pods = (pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}, {"name": "blue", "ips": ["198.18.100.1"]}]') +
            pod("b", '[{"name": "red", "ips": ["198.18.100.2"]}, {"name": "blue", "ips": ["198.18.100.2"]}]') +
            pod("c", '[{"name": "blue", "ips": ["198.18.100.3"]}]'))
    rules = "  ingress:\n  - from: [{podSelector: {matchLabels: {app: c}}}]"
    f = tmp_path / "m.yaml"
    f.write_text(textwrap.dedent(NADS + pods + MNP.format(version="v1beta2", name="b-in", policy_for="red",
                                                          spec=rules)))
    assert main(["verdict", "-f", str(f), "--from", "lab/a", "--to", "lab/b", "--port", "80",
                 "--network", "lab/red", "-o", "json"]) == 1
    v = json.loads(capsys.readouterr().out)
    assert v["from"].startswith("lab/a/net1 (198.18.100.1)") and v["ingress"]["policies"] == ["lab/b-in"]
    assert main(["verdict", "-f", str(f), "--from", "lab/a", "--to", "lab/b", "--port", "80",
                 "--network", "lab/blue"]) == 0
    capsys.readouterr()
    assert main(["reach", "-f", str(f), "--ports", "80", "--protocols", "TCP", "--network", "lab/red",
                 "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cells = {(x["from"], x["to"]): x["allowed"] for x in out}       # the shape of today's cells
    assert cells[("lab/a", "lab/b")] is False and cells[("lab/b", "lab/a")] is True
    assert not any("lab/c" in k for k in cells)                  # c is not on red
    assert main(["verdict", "-f", str(f), "--from", "lab/c", "--to", "lab/a", "--port", "80",
                 "--network", "lab/red"]) == 2
    assert "pod lab/c is not attached to network red-net" in capsys.readouterr().err
    assert main(["reach", "-f", str(f), "--ports", "80", "--network", "lab/nosuch"]) == 2


def test_policies_of_a_pod_are_listed_per_network(tmp_path, capsys):
    import json
    pods = (pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}]') +
            pod("b", '[{"name": "red", "ips": ["198.18.100.2"]}, {"name": "blue", "ips": ["198.18.100.2"]}]'))
    rules = "  ingress:\n  - from: [{podSelector: {matchLabels: {app: a}}}]"
    f = tmp_path / "m.yaml"
    f.write_text(textwrap.dedent(NADS + pods + MNP.format(version="v1beta2", name="b-in", policy_for="red",
                                                          spec=rules)))
    assert main(["policies", "-f", str(f), "--pod", "lab/b", "-o", "json"]) == 0
    rel = json.loads(capsys.readouterr().out)
    assert rel["isolated"] == {"Ingress": False, "Egress": False}             # the cluster network
    assert rel["networks"]["red-net"]["selectedBy"]["Ingress"] == ["lab/b-in"]
    assert rel["networks"]["blue-net"]["isolated"] == {"Ingress": False, "Egress": False}
    assert main(["policies", "-f", str(f), "--pod", "lab/a", "-o", "json"]) == 0
    rel = json.loads(capsys.readouterr().out)
    assert rel["networks"]["red-net"]["peerIn"] == [{"policy": "lab/b-in", "direction": "Ingress", "rule": 0}]
    assert rel["peerIn"] == []
    assert main(["policies", "-f", str(f), "--pod", "lab/b"]) == 0
    assert "on network red-net (MultiNetworkPolicies):\n    Ingress: isolated by lab/b-in" in capsys.readouterr().out


def test_c_and_the_oracle_police_each_network_by_its_own_policies():
    """An identity per pod and network: a NetworkPolicy denying everything on the
    cluster network, a MultiNetworkPolicy letting only app=c into b on red; blue free."""
    from scapy.all import IP, TCP

    from .packets import ether
    from .test_regressions import Both
    deny = ("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: lab}\n"
            "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n")
    rules = "  ingress:\n  - from: [{podSelector: {matchLabels: {app: c}}}]\n    ports: [{port: 80}]"
    text = textwrap.dedent(
        NADS + pod("a", '[{"name": "red", "ips": ["198.18.100.1"]}, {"name": "blue", "ips": ["198.18.100.1"]}]') +
        pod("b", '[{"name": "red", "ips": ["198.18.100.2"]}, {"name": "blue", "ips": ["198.18.100.2"]}]') +
        pod("c", '[{"name": "red", "ips": ["198.18.100.3"]}]') + deny +
        MNP.format(version="v1beta2", name="b-in", policy_for="red", spec=rules))
    both = Both(text)
    port = {str(a): a.port for a in both.cluster.plane.attachments()}

    def syn(src, dst, dport=80):
        return ether() / IP(src=src, dst=dst) / TCP(sport=7, dport=dport, flags="S")
    assert both.run(syn("198.18.100.1", "198.18.100.2"), port["lab/a/net1"]).reason == "denied_ingress"
    r = both.run(syn("198.18.100.3", "198.18.100.2"), port["lab/c/net1"])
    assert r.reason == "new" and r.ingress_rule is not None
    assert both.run(syn("198.18.100.3", "198.18.100.2", 81), port["lab/c/net1"]).reason == "denied_ingress"
    assert both.run(syn("198.18.100.1", "198.18.100.2"), port["lab/a/net2"]).reason == "new"       # blue
    a0, b0 = (str(both.cluster.pod_address(k)) for k in ("lab/a", "lab/b"))
    assert both.run(syn(a0, b0), port["lab/a"]).reason == "denied_egress"                          # cluster
    # the flow record names the MultiNetworkPolicy's rule
    from pipeline.dataplane.compiler import compile_cluster as cc
    from pipeline.dataplane.flows import FlowBuilder
    rec = FlowBuilder(cc(both.cluster)).rule(r.ingress_rule)
    assert rec == [{"kind": "MultiNetworkPolicy", "namespace": "lab", "name": "b-in", "rule": "ingress[0]"}]
