"""Zone and network numbers: the dataplane's names for IP address domains (the
cluster's own is NS_ZONE_DEFAULT, the others follow in name order) and for networks
(the cluster network is 0, the others follow in name order). The compiler and the
oracle number them the same way through these functions."""

from __future__ import annotations

from ..model.addresses import DEFAULT_DOMAIN, DEFAULT_NETWORK
from ..model.cluster import Cluster
from .constants import ZONE_DEFAULT


def zone_numbers(cluster: Cluster) -> dict[str, int]:
    zones = {DEFAULT_DOMAIN: ZONE_DEFAULT}
    for d in sorted({domain for domain, _, _ in cluster.plane} - {DEFAULT_DOMAIN}):
        zones[d] = len(zones)
    return zones


def network_numbers(cluster: Cluster) -> dict[str, int]:
    nets = {DEFAULT_NETWORK: 0}
    named = set(cluster.networks) | {a.network for a in cluster.plane.attachments()}
    for n in sorted(named - {DEFAULT_NETWORK}):
        nets[n] = len(nets)
    return nets
