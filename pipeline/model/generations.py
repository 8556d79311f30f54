"""A cluster's next generation as a delta of the previous one (what a watcher sees
most: labels changing, pods coming and going), for compiler/delta.py: a copy that
shares with `cluster` everything the change cannot touch, so it costs O(changed
pods). A built generation is never mutated afterwards; the shared parts stay the
previous generation's. Private to the model (it reaches into Cluster's indexes)."""

from __future__ import annotations

import copy
from dataclasses import replace

from .addresses import DEFAULT_DOMAIN, DEFAULT_NODE


def _carry_rule_ids(cluster, before) -> None:
    """Pods come, go or change labels: the policies, and so their rule numbering
    (policy.rule_ids), are the generation before's."""
    cached = getattr(before, "_rule_ids", None)
    if cached is not None and cached[0] == before.generation:
        cluster._rule_ids = (cluster.generation, cached[1])


def relabeled(cluster, labels: dict[str, dict]):
    """The next generation with these pods' labels ({pod key: labels}) changed and
    nothing else: the watcher's most common event. A copy that shares what labels
    cannot change (the address plane, Services, policies: a built generation is
    never mutated), so it costs O(changed pods), not O(cluster). The pods'
    Service mappings are recomputed (a selector may gain or lose them)."""
    c = copy.copy(cluster)
    c.pods, c._pods_by_label = dict(cluster.pods), dict(cluster._pods_by_label)
    c._pod_to_services, c._service_to_pods = dict(cluster._pod_to_services), dict(cluster._service_to_pods)
    for key, new in labels.items():
        old = c.pods[key]
        for k, v in old.labels.items():
            lk = (old.namespace, k, v)
            c._pods_by_label[lk] = c._pods_by_label.get(lk, set()) - {key}
        c.pods[key] = replace(old, labels=dict(new))
        for k, v in new.items():
            lk = (old.namespace, k, v)
            c._pods_by_label[lk] = c._pods_by_label.get(lk, set()) | {key}
        for svc in c._pod_to_services.get(key, ()):
            c._service_to_pods[svc] = c._service_to_pods[svc] - {key}
        c._pod_to_services[key] = mine = c._services_of(key)
        for svc in mine:
            c._service_to_pods[svc] = c._service_to_pods.get(svc, set()) | {key}
    c.generation = cluster.generation + 1
    _carry_rule_ids(c, cluster)
    return c


def with_pods(cluster, added: list = (), removed: list = ()):
    """The next generation with pods come and gone, as a copy (relabeled's
    reasoning): `removed` by key, `added` running pods of an existing namespace
    with their addresses on the cluster network (what a watcher sees of a
    scheduled pod). Raises AddressError (with cluster untouched) when an address
    is taken."""
    c = copy.copy(cluster)
    c.plane = cluster.plane.copy()
    c.pods, c._pods_by_label = dict(cluster.pods), dict(cluster._pods_by_label)
    c._pod_to_services, c._service_to_pods = dict(cluster._pod_to_services), dict(cluster._service_to_pods)
    for key in removed:
        pod = c.pods.pop(key)
        for k, v in pod.labels.items():
            lk = (pod.namespace, k, v)
            c._pods_by_label[lk] = c._pods_by_label.get(lk, set()) - {key}
        for svc in c._pod_to_services.pop(key, ()):
            c._service_to_pods[svc] = c._service_to_pods[svc] - {key}
        c.plane.remove_pod_to_address_mappings(key)
    for pod in added:
        for ip in pod.ips:
            c.plane.check_free(DEFAULT_DOMAIN, ip)
        for ip in pod.ips:
            c.plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, ip, pod.key, node=pod.node_name or DEFAULT_NODE)
        c.pods[pod.key] = pod
        for k, v in pod.labels.items():
            lk = (pod.namespace, k, v)
            c._pods_by_label[lk] = c._pods_by_label.get(lk, set()) | {pod.key}
        c._pod_to_services[pod.key] = mine = c._services_of(pod.key)
        for svc in mine:
            c._service_to_pods[svc] = c._service_to_pods.get(svc, set()) | {pod.key}
    c.generation = cluster.generation + 1
    _carry_rule_ids(c, cluster)
    return c


def with_policies(cluster, put: list = (), removed: list = ()):
    """The next generation with NetworkPolicies put (added or replaced) and removed
    by key, in namespaces that exist. Rule ids are numbered again (policy.rule_ids)."""
    c = copy.copy(cluster)
    c.policies = dict(cluster.policies)
    for key in removed:
        c.policies.pop(key, None)
    for pol in put:
        c.policies[pol.key] = pol
    c.generation = cluster.generation + 1
    return c
