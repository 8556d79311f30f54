"""Cluster DNS (003 asks for it), after the Kubernetes DNS specification
(kubernetes/dns, docs/specification.md): what names the cluster answers for, and the
resolver configuration a pod gets. The server that answers is
`pipeline/switch/dns.py`; it only serves the records made here.

- `<service>.<ns>.svc.cluster.local` A / AAAA: a Service's cluster IPs; a headless
  Service's ready endpoints' addresses instead (ready as `services.ready_backends`
  says, over every port); none for an ExternalName Service.
- a pod's resolver: `nameserver` the DNS Service's address, `search <ns>.svc.cluster.local
  svc.cluster.local cluster.local`, `options ndots:5`, so `backend`, `backend.shop` and
  the full name all resolve, as in a pod of a real cluster.

`add_cluster_dns` adds what kubeadm installs when the manifests do not say: the
Service kube-system/kube-dns at DEFAULT_DNS_ADDRESS (ports 53/UDP and 53/TCP) and one
pod behind it labelled `k8s-app: kube-dns`. DNS traffic is then an ordinary connection
through a ClusterIP to a pod of kube-system: egress policy decides it against that pod,
so the usual "allow DNS" rule (namespaceSelector kubernetes.io/metadata.name:
kube-system with podSelector k8s-app: kube-dns, ports 53) works, and an egress-isolated
pod without one cannot resolve names, as in a real cluster."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

from .addresses import DEFAULT_DOMAIN
from .cluster import Cluster
from .objects import ContainerPort, Pod, Service, ServicePort
from .services import ready_backends

CLUSTER_DOMAIN = "cluster.local"
DEFAULT_DNS_ADDRESS = "198.19.0.10"
DNS_NAMESPACE, DNS_SERVICE, DNS_POD = "kube-system", "kube-dns", "netsem-dns"
DNS_LABELS = {"k8s-app": "kube-dns"}
TTL = 5                                  # CoreDNS's kubernetes plugin default


@dataclass
class Records:
    a: list = field(default_factory=list)
    aaaa: list = field(default_factory=list)


def service_name(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def dns_records(cluster: Cluster) -> dict[str, Records]:
    """Fully qualified name (lower case, no trailing dot) -> its A and AAAA records."""
    out: dict[str, Records] = {}
    for svc in sorted(cluster.services.values(), key=lambda s: s.key):
        if svc.type == "ExternalName":
            continue
        if svc.headless:
            addrs = sorted({b.address for sp in svc.ports for b in ready_backends(cluster, svc, sp)},
                           key=lambda a: (a.version, a))
        else:
            addrs = list(svc.cluster_ips)
        r = out.setdefault(service_name(svc.namespace, svc.name), Records())
        r.a = [str(a) for a in addrs if a.version == 4]
        r.aaaa = [str(a) for a in addrs if a.version == 6]
    return out


def resolv_conf(namespace: str, nameserver: str) -> str:
    """A pod's /etc/resolv.conf, as kubelet writes it for dnsPolicy ClusterFirst (a
    short timeout: there is no upstream to wait for)."""
    return (f"nameserver {nameserver}\n"
            f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
            f"options ndots:5 timeout:1 attempts:2\n")


def dns_service(cluster: Cluster) -> Optional[Service]:
    return cluster.services.get(f"{DNS_NAMESPACE}/{DNS_SERVICE}")


class DNSError(ValueError):
    """The cluster DNS cannot be added as asked (its address is taken)."""


def add_cluster_dns(cluster: Cluster, address: str = DEFAULT_DNS_ADDRESS) -> list[str]:
    """Adds the DNS Service and its pod unless the manifests have kube-system/kube-dns;
    returns the keys of the pods that must answer (the Service's ready backends on
    53/UDP). The added pod's address is the highest free one of the pod CIDR of the
    DNS address's family, so the manifests' pods keep theirs."""
    svc = dns_service(cluster)
    if svc is None:
        ip = ipaddress.ip_address(address)
        taken = cluster.plane.lookup(DEFAULT_DOMAIN, ip)
        if taken is not None:
            raise DNSError(f"the cluster DNS address {ip} is taken ({taken}); choose another "
                           f"with --cluster-dns, or --cluster-dns none")
        cidr = next((ipaddress.ip_network(c) for c in cluster.config.pod_cidrs
                     if ipaddress.ip_network(c).version == ip.version), None)
        if cidr is None:
            raise DNSError(f"no pod CIDR of the family of the cluster DNS address {ip}")
        pod_ip = next((a for a in _downwards(cidr) if cluster.plane.lookup(DEFAULT_DOMAIN, a) is None), None)
        if pod_ip is None:
            raise DNSError(f"no free address in {cidr} for the cluster DNS pod")
        ports = (ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"))
        cluster.add_pod(Pod(DNS_NAMESPACE, DNS_POD, dict(DNS_LABELS), ports, ips=(pod_ip,)))
        svc = Service(DNS_NAMESPACE, DNS_SERVICE, dict(DNS_LABELS),
                      (ServicePort(53, "UDP", "dns", "dns"), ServicePort(53, "TCP", "dns-tcp", "dns-tcp")),
                      cluster_ips=(ip,))
        cluster.add_service(svc)
    udp = svc.port("UDP", 53)
    if udp is None:
        return []
    return sorted({b.pod for b in ready_backends(cluster, svc, udp) if b.pod is not None})


def _downwards(cidr):
    top = int(cidr.broadcast_address) - 1
    for i in range(top, max(int(cidr.network_address), top - 4096), -1):
        yield ipaddress.ip_address(i)
