"""OpenContrail's isolation modes (003), written as cluster-wide policy for a given
cluster: the manifests `netsem isolation` prints.

  open         every pod reaches every pod: a BaselineAdminNetworkPolicy that allows
               all pod traffic, so the mode is stated (NetworkPolicies still apply);
  namespace    pods reach the pods of their own namespace only;
  application  pods reach the pods of their own application only (pods with the same
               value of the application label, default `app`, in their namespace;
               pods without the label are isolated per namespace).

Isolation is the Admin tier's: per namespace (or application) a policy passes
traffic within it and from or to the shared namespaces (kube-system by default:
DNS and the cluster's own services) down to NetworkPolicy, and denies every other
pod. Pass, not Allow, so that NetworkPolicies can still narrow what isolation lets
through; traffic to and from outside the cluster (not pods) is not touched. The
policies' priorities are distinct, so their order is defined."""

from __future__ import annotations

import json
import re

from .cluster import Cluster

MODES = ("open", "namespace", "application")
NAME_LABEL = "kubernetes.io/metadata.name"
API = {"v1alpha1": "policy.networking.k8s.io/v1alpha1", "v1alpha2": "policy.networking.k8s.io/v1alpha2"}


class IsolationError(ValueError):
    pass


def _name(*parts: str) -> str:
    """A DNS subdomain from label values (which may hold '_' or capitals)."""
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower()).strip("-.")[:253]


def _ns(name: str) -> dict:
    return {"matchLabels": {NAME_LABEL: name}}


def _shared(shared: list[str]) -> dict:
    return {"matchExpressions": [{"key": NAME_LABEL, "operator": "In", "values": sorted(shared)}]}


def _peers(own: dict, shared: list[str]) -> list:
    """Pass own, Pass the shared namespaces, Deny every other pod."""
    rules = [("isolation-own", "Pass", [own])]
    if shared:
        rules.append(("isolation-shared", "Pass", [{"namespaces": _shared(shared)}]))
    rules.append(("isolation-others", "Deny", [{"namespaces": {}}]))
    return rules


def _policy(api: str, name: str, priority: int, subject: dict, own: dict, shared: list[str]) -> dict:
    rules = _peers(own, shared)
    if api == "v1alpha2":
        spec = {"tier": "Admin", "priority": priority, "subject": subject,
                "ingress": [{"name": n, "action": a, "from": p} for n, a, p in rules],
                "egress": [{"name": n, "action": a, "to": p} for n, a, p in rules]}
        kind = "ClusterNetworkPolicy"
    else:
        spec = {"priority": priority, "subject": subject,
                "ingress": [{"name": n, "action": a, "from": p} for n, a, p in rules],
                "egress": [{"name": n, "action": a, "to": p} for n, a, p in rules]}
        kind = "AdminNetworkPolicy"
    return {"apiVersion": API[api], "kind": kind, "metadata": {"name": name}, "spec": spec}


def isolation_policies(cluster: Cluster, mode: str, api: str = "v1alpha1", shared=("kube-system",),
                       app_label: str = "app", first_priority: int = 100) -> list[dict]:
    """The manifests of `mode` for this cluster's namespaces (and applications)."""
    if mode not in MODES:
        raise IsolationError(f"mode {mode!r}: one of {', '.join(MODES)}")
    shared = [s for s in shared if s]
    if mode == "open":
        rule = [{"namespaces": {}}]
        if api == "v1alpha2":
            return [{"apiVersion": API[api], "kind": "ClusterNetworkPolicy", "metadata": {"name": "isolation-open"},
                     "spec": {"tier": "Baseline", "priority": first_priority, "subject": {"namespaces": {}},
                              "ingress": [{"name": "open", "action": "Accept", "from": rule}],
                              "egress": [{"name": "open", "action": "Accept", "to": rule}]}}]
        return [{"apiVersion": API[api], "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
                 "spec": {"subject": {"namespaces": {}},
                          "ingress": [{"name": "open", "action": "Allow", "from": rule}],
                          "egress": [{"name": "open", "action": "Allow", "to": rule}]}}]
    out: list[dict] = []
    isolated = [n for n in sorted(cluster.namespaces) if n not in shared]
    for ns in isolated:
        apps = sorted({p.labels[app_label] for p in cluster.pod_list(ns) if app_label in p.labels}) \
            if mode == "application" else []
        for app in apps:
            pods = {"pods": {"namespaceSelector": _ns(ns), "podSelector": {"matchLabels": {app_label: app}}}}
            out.append((_name("isolation", ns, app), pods, pods))
        if mode == "namespace":
            out.append((_name("isolation", ns), {"namespaces": _ns(ns)}, {"namespaces": _ns(ns)}))
        else:
            # The namespace's pods without the application label: one group.
            rest = {"pods": {"namespaceSelector": _ns(ns), "podSelector": {
                "matchExpressions": [{"key": app_label, "operator": "DoesNotExist"}]}}}
            out.append((_name("isolation", ns, "no", app_label), rest, rest))
    if first_priority + len(out) - 1 > 1000:
        raise IsolationError(f"{len(out)} policies from priority {first_priority} do not fit below 1000: "
                             f"give a lower --first-priority")
    docs = [_policy(api, name, first_priority + i, subject, own, shared) for i, (name, subject, own) in enumerate(out)]
    return json.loads(json.dumps(docs))      # nothing shared between documents (no YAML aliases)
