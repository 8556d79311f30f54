"""Adding cluster-wide policies to a cluster, with the warning upstream asks for:
policies of one tier at one priority have no defined order (network-policy-api:
"the implementation can apply any of the matching policies"). netsem orders them
by kind, then name, and says so whenever two of them select a common pod."""

from __future__ import annotations

from ..model.admin import selects
from ..model.cluster import Cluster


def add_admin_policies(cluster: Cluster, docs: list, err, notes: list) -> None:
    for _, pol in docs:
        cluster.add_admin_policy(pol)
    by_place: dict = {}
    for _, pol in sorted(docs, key=lambda dp: dp[1].order):
        by_place.setdefault((pol.tier, pol.priority), []).append(pol)
    for (tier, priority), pols in sorted(by_place.items()):
        if len(pols) < 2:
            continue
        subjects = {p.key: {k for k, pod in cluster.pods.items() if selects(cluster, p, pod)} for p in pols}
        for i, a in enumerate(pols):
            for b in pols[i + 1:]:
                common = sorted(subjects[a.key] & subjects[b.key])
                if common:
                    more = f" (and {len(common) - 1} more)" if len(common) > 1 else ""
                    notes.append(f"warning: {a.key} and {b.key} both have priority {priority} in the {tier} tier "
                                 f"and both select {common[0]}{more}: their order is undefined upstream; netsem "
                                 f"evaluates {a.key} first (by kind, then name)")
