"""Cluster DNS without namespaces: the records the model makes (ClusterIP, dual-stack,
headless with readiness, ExternalName), the resolver configuration, the DNS Service
and pod added, and the answers the server gives to real DNS messages (dnspython)."""

import json

import dns.flags
import dns.message
import dns.rcode
import pytest

from pipeline.model.dns import DNSError, add_cluster_dns, dns_records, resolv_conf
from pipeline.switch.dns import Answers

from .conftest import cluster_from

CLUSTER = """
apiVersion: v1
kind: Pod
metadata: {name: w0, namespace: web, labels: {app: w}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIPs: [{ip: 198.18.0.10}, {ip: "2001:db8::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: w1, namespace: web, labels: {app: w}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status:
  podIPs: [{ip: 198.18.0.11}]
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: web}
spec:
  selector: {app: w}
  clusterIPs: [198.19.0.20, "2001:db8:2::20"]
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: peers, namespace: web}
spec: {selector: {app: w}, clusterIP: None, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: web}
spec: {type: ExternalName, externalName: example.org}
"""


def test_records_of_cluster_ips_headless_services_and_external_names():
    recs = dns_records(cluster_from(CLUSTER))
    web = recs["web.web.svc.cluster.local"]
    assert (web.a, web.aaaa) == (["198.19.0.20"], ["2001:db8:2::20"])
    peers = recs["peers.web.svc.cluster.local"]      # ready endpoints only: w1 is not ready
    assert (peers.a, peers.aaaa) == (["198.18.0.10"], ["2001:db8::10"])
    assert "alias.web.svc.cluster.local" not in recs


def test_resolv_conf_searches_the_namespace_first():
    text = resolv_conf("shop", "198.19.0.10")
    assert text.splitlines()[:2] == ["nameserver 198.19.0.10",
                                     "search shop.svc.cluster.local svc.cluster.local cluster.local"]
    assert "ndots:5" in text


def test_the_dns_service_and_pod_are_added_once_and_refused_on_a_taken_address():
    c = cluster_from(CLUSTER)
    assert add_cluster_dns(c) == ["kube-system/netsem-dns"]
    pod = c.pods["kube-system/netsem-dns"]
    assert pod.labels == {"k8s-app": "kube-dns"} and str(pod.ips[0]) == "198.18.255.254"
    assert c.namespaces["kube-system"].labels["kubernetes.io/metadata.name"] == "kube-system"
    assert dns_records(c)["kube-dns.kube-system.svc.cluster.local"].a == ["198.19.0.10"]
    assert add_cluster_dns(c) == ["kube-system/netsem-dns"]        # kept, not added twice
    with pytest.raises(DNSError, match="198.19.0.20 is taken"):
        add_cluster_dns(cluster_from(CLUSTER), "198.19.0.20")


def ask(answers, name, rdtype="A"):
    q = dns.message.make_query(name, rdtype)
    return dns.message.from_wire(answers.answer(q.to_wire()))


def test_the_server_answers_a_aaaa_nodata_and_nxdomain(tmp_path):
    c = cluster_from(CLUSTER)
    path = tmp_path / "records.json"
    path.write_text(json.dumps({n: {"a": r.a, "aaaa": r.aaaa} for n, r in dns_records(c).items()}))
    answers = Answers(str(path))
    r = ask(answers, "web.web.svc.cluster.local.")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert [x.to_text() for x in r.answer[0]] == ["198.19.0.20"] and r.answer[0].ttl == 5
    assert [x.to_text() for x in ask(answers, "WEB.web.svc.cluster.local.", "AAAA").answer[0]] == \
        ["2001:db8:2::20"]
    r = ask(answers, "peers.web.svc.cluster.local.", "MX")          # the name exists: no data
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert ask(answers, "nope.web.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    r = ask(answers, "example.org.")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.flags & dns.flags.AA
    assert answers.answer(b"\x00garbage") is None
    # a reload rewrites the file: the server reads it again
    path.write_text(json.dumps({"web.web.svc.cluster.local": {"a": ["198.19.0.99"], "aaaa": []}}))
    import os
    os.utime(path, ns=(1, 1))
    assert [x.to_text() for x in ask(answers, "web.web.svc.cluster.local.").answer[0]] == ["198.19.0.99"]
