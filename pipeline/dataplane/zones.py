"""Zone numbers: the dataplane's names for IP address domains (the cluster's own is
NS_ZONE_DEFAULT, the others follow in name order). The compiler and the oracle number
them the same way through this function."""

from __future__ import annotations

from ..model.addresses import DEFAULT_DOMAIN
from ..model.cluster import Cluster
from .constants import ZONE_DEFAULT


def zone_numbers(cluster: Cluster) -> dict[str, int]:
    zones = {DEFAULT_DOMAIN: ZONE_DEFAULT}
    for d in sorted({domain for domain, _, _ in cluster.plane} - {DEFAULT_DOMAIN}):
        zones[d] = len(zones)
    return zones
