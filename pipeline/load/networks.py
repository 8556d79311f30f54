"""Pods' secondary network attachments, as Multus makes them: each NetworkRequest
resolved to its NetworkAttachmentDefinition and network, given the addresses the pod
reports for it (network-status), else those it asked for, else the next free ones of
the definition's IPAM subnets; then mapped in the network's domain through the
address plane. Two attachments with one address in one domain are a load error; in
two domains they are two different things."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from ..model.addresses import DEFAULT_NODE, AddressError
from ..model.objects import NetworkAttachmentDefinition
from .network_kinds import NETWORKS, POLICY_FOR


def attach_networks(cluster, nads: list, pods: list, err) -> None:
    """nads: [(doc, NetworkAttachmentDefinition)]; pods: [(doc, Pod)] already added."""
    for doc, nad in sorted(nads, key=lambda dn: dn[1].key):
        try:
            cluster.add_network_attachment_definition(nad)
        except ValueError as e:
            err(doc, "spec.config", f"Invalid value: {e}")
    for doc, nad in sorted(nads, key=lambda dn: dn[1].key):
        for other in nad.routable:
            try:
                cluster.declare_routable(nad.network, other)
            except ValueError as e:
                err(doc, "spec.config", f"Invalid value: routableNetworks: {e}")
    pools: dict = {}
    todo = []                   # (doc, pod, path, iface, nad, given addresses)
    for doc, pod in sorted(pods, key=lambda dp: dp[1].key):
        if pod.finished or pod.host_network or not pod.networks:
            continue
        status = {(s.network, s.interface): s for s in pod.network_status}
        used = set()
        for i, req in enumerate(pod.networks):
            path = f"metadata.annotations[{NETWORKS}][{i}]"
            nad = cluster.network_attachment_definitions.get(f"{req.namespace}/{req.name}")
            if nad is None:
                err(doc, path, f"Not found: network attachment definition {req.namespace}/{req.name}")
                continue
            iface = req.interface or f"net{i + 1}"
            if iface in used or iface == "eth0":
                err(doc, f"{path}.interface", f"Duplicate value: {iface!r}")
                continue
            used.add(iface)
            st = status.get((nad.key, iface))
            todo.append((doc, pod, path, iface, nad, (st.ips if st else ()) or req.ips))
    # Addresses reported or asked for first, then allocation around them, as the
    # pods' own addresses are before the cluster network's allocation.
    for given in (True, False):
        for doc, pod, path, iface, nad, ips in todo:
            if bool(ips) != given:
                continue
            net = cluster.networks[nad.network]
            ips = ips or _allocate(cluster, pools, nad)
            if not ips:
                err(doc, path, f"Required value: no address for {iface} on network {net.name}: none in "
                    f"network-status nor asked for, and {nad.key} has no IPAM subnet with a free one")
                continue
            for ip in ips:
                try:
                    cluster.plane.add_address_to_pod_mapping(net.domain, ip, pod.key, iface, net.name,
                                                             node=pod.node_name or DEFAULT_NODE)
                except AddressError as e:
                    err(doc, path, f"Duplicate value: {e}")


def _allocate(cluster, pools: dict, nad: NetworkAttachmentDefinition) -> tuple:
    """One address per family of the definition's subnets: the lowest free of the
    domain, as host-local would hand them out to pods in name order."""
    out = []
    for subnet in nad.subnets:
        hosts = pools.setdefault((nad.domain, subnet), subnet.hosts())
        for ip in hosts:
            if cluster.plane.lookup(nad.domain, ip) is None and ip.version not in {a.version for a in out}:
                out.append(ipaddress.ip_address(ip))
                break
    return tuple(out)


def add_multi_network_policies(cluster, policies: list, err) -> None:
    """Each MultiNetworkPolicy with the networks its policy-for names (definitions
    resolved to their networks; one that does not exist is an error)."""
    for doc, pol in sorted(policies, key=lambda dp: dp[1].key):
        nets = []
        for i, (ns, name) in enumerate(pol.policy_for):
            nad = cluster.network_attachment_definitions.get(f"{ns}/{name}")
            if nad is None:
                err(doc, f"metadata.annotations[{POLICY_FOR}][{i}]",
                    f"Not found: network attachment definition {ns}/{name}")
            elif nad.network not in nets:
                nets.append(nad.network)
        cluster.add_multi_network_policy(replace(pol, networks=tuple(nets)))

