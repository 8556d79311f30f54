"""Deltas equal full recompiles (issue 10): a label change applied as a table delta
(Cluster.relabeled + compiler/delta.py) gives the tables a full compile of the same
cluster gives, verdict for verdict, read from the C tables themselves (the endpoint
rows' identities and ns_tables_policy_check)."""

from __future__ import annotations

import copy
import os
import random
import sys

import pytest

from pipeline._native import ffi, lib
from pipeline.dataplane.addr16 import addr16
from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.compiler.delta import NeedFull, compile_next, compile_relabeled
from pipeline.load.live import LiveCluster
from pipeline.switch.sources import delta_of
from pipeline.model.addresses import DEFAULT_DOMAIN

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from gen_cluster import generate  # noqa: E402

PROBES = [(6, 80), (6, 75), (6, 443), (6, 8080), (17, 80), (132, 80)]


def verdicts(compiled) -> dict:
    """(source pod, destination pod, protocol, port) -> (egress, ingress) as
    (allowed, rule id), the identities read back from the endpoint rows."""
    t, c = compiled.tables, compiled.cluster
    kind, port, ident = ffi.new("uint8_t *"), ffi.new("uint16_t *"), ffi.new("uint32_t *")
    rule = ffi.new("uint32_t *")
    pods = []
    for p in c.pod_list():
        a = c.plane.address(c.attachment(p.key))
        assert lib.ns_tables_lookup_endpoint(t, 0, addr16(a), kind, port, ident) == 0
        pods.append((p.key, addr16(a), ident[0]))
    out = {}
    for sk, sa, si in pods:
        for dk, da, di in pods:
            for proto, dport in PROBES:
                # Through the tiers, as the policy filter decides (cluster network).
                e = lib.ns_tables_direction_verdict(t, 1, 1, si, di, da, proto, dport, rule), rule[0]
                i = lib.ns_tables_direction_verdict(t, 0, 1, di, si, sa, proto, dport, rule), rule[0]
                out[(sk, dk, proto, dport)] = (e, i)
    return out


def endpoints(compiled, addresses) -> dict:
    """What the C endpoint table has at each address: (kind, port), or None."""
    kind, port = ffi.new("uint8_t *"), ffi.new("uint16_t *")
    return {a: ((kind[0], port[0]) if lib.ns_tables_lookup_endpoint(compiled.tables, 0, addr16(a), kind, port,
                                                                      ffi.NULL) == 0 else None)
            for a in addresses}


def relabel(live: LiveCluster, key: str, labels: dict):
    obj = copy.deepcopy(live.objects[("Pod",) + tuple(key.split("/"))])
    obj["metadata"]["labels"] = labels
    applied = live.apply("MODIFIED", obj)
    assert not applied.rejected and applied.relabeled == {key}
    return applied


def canary_policy(ns: str) -> dict:
    """Selects only label sets the generator never makes (the tests' new identities):
    a rule with no peers, and peers that are new identities too."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "canary", "namespace": ns},
            "spec": {"podSelector": {"matchExpressions": [{"key": "canary", "operator": "Exists"}]},
                     "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"ports": [{"port": 443}]},
                                 {"from": [{"namespaceSelector": {},
                                            "podSelector": {"matchLabels": {"canary": "5"}}}]}],
                     "egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "canary",
                                                                                "operator": "Exists"}]}}],
                                 "ports": [{"port": "http"}]}]}}


@pytest.fixture(scope="module")
def docs():
    return generate(pods=60, namespaces=4, policies=30, seed=5) + [canary_policy(f"ns-{n:02d}") for n in range(4)]


def test_a_sequence_of_label_changes_as_deltas_equals_full_compiles(docs):
    rnd = random.Random(11)
    live = LiveCluster()
    live.load(docs)
    compiled = compile_cluster(live.cluster)
    pods = sorted(live.cluster.pods)
    new_identities = 0
    for step in range(12):
        key = rnd.choice(pods)
        labels = {"app": f"app-{rnd.randrange(8)}", "tier": rnd.choice(["web", "api", "db"])}
        if step % 3 == 2:
            labels["canary"] = str(step)            # a label set never seen: a new identity
        applied = relabel(live, key, labels)
        n_before = len(compiled.identities)
        compiled = compile_relabeled(compiled, applied.after, applied.relabeled)
        new_identities += len(compiled.identities) - n_before
        assert compiled.cluster is live.cluster
        assert verdicts(compiled) == verdicts(compile_cluster(live.cluster)), f"step {step}: {key} {labels}"
    assert new_identities >= 4


def test_a_delta_leaves_the_previous_generation_untouched(docs):
    """The running generation's tables and model stay as they were; and a second
    delta made from it (after the first took its matrices over) is still right."""
    live = LiveCluster()
    live.load(docs)
    first = compile_cluster(live.cluster)
    want = verdicts(first)
    isolation, entries = dict(first.policy.isolation), {k: list(v) for k, v in first.policy.entries.items()}
    key, other = sorted(live.cluster.pods)[:2]
    applied = relabel(live, key, {"app": "app-1", "tier": "db", "canary": "yes"})
    second = compile_relabeled(first, applied.after, applied.relabeled)
    assert verdicts(first) == want                  # the running generation, as it was
    assert first.policy.isolation == isolation and first.policy.entries == entries
    assert first.cluster.pods[key].labels != second.cluster.pods[key].labels
    # Another branch from `first`: its matrices were taken over, so this one copies.
    fork = first.cluster.relabeled({other: {"app": "app-2", "canary": "5"}})
    third = compile_relabeled(first, fork, {other})
    assert verdicts(third) == verdicts(compile_cluster(fork))
    assert verdicts(second) == verdicts(compile_cluster(applied.after))


def test_a_new_label_set_past_the_room_asks_for_a_full_compile(docs):
    live = LiveCluster()
    live.load(docs)
    compiled = compile_cluster(live.cluster)
    pods = sorted(live.cluster.pods)
    with pytest.raises(NeedFull):
        for i in range(compiled.policy.capacity):
            applied = relabel(live, pods[i % len(pods)], {"app": "x", "unique": str(i)})
            compiled = compile_relabeled(compiled, applied.after, applied.relabeled)


def test_a_label_change_moves_a_pod_between_selector_services():
    objs = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}},
         "spec": {"containers": [{"name": "c", "image": "i"}]},
         "status": {"podIPs": [{"ip": "198.18.0.10"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sx", "namespace": "ns"},
         "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sy", "namespace": "ns"},
         "spec": {"selector": {"app": "y"}, "ports": [{"port": 80}]}},
    ]
    live = LiveCluster()
    live.load(objs)
    first = compile_cluster(live.cluster)
    applied = relabel(live, "ns/a", {"app": "y"})
    assert applied.before.lookup_service_to_pod_mappings("ns/sx") == ["ns/a"]
    assert applied.after.lookup_service_to_pod_mappings("ns/sx") == []
    assert applied.after.lookup_service_to_pod_mappings("ns/sy") == ["ns/a"]
    assert applied.before.lookup_service_to_pod_mappings("ns/sy") == []     # the old one untouched
    delta = compile_relabeled(first, applied.after, applied.relabeled)
    full = compile_cluster(applied.after)
    assert delta.services.frontends == full.services.frontends
    fresh = LiveCluster()
    fresh.load(list(live.objects.values()))
    assert fresh.cluster.lookup_service_to_pod_mappings("ns/sy") == ["ns/a"]
    assert fresh.cluster.plane.lookup(DEFAULT_DOMAIN, "198.18.0.10") is not None


def test_anything_but_labels_takes_the_full_path(docs):
    live = LiveCluster()
    live.load(docs)
    obj = copy.deepcopy(live.objects[("Pod", "ns-00", "pod-0000")])
    obj["spec"]["containers"][0]["ports"][0]["containerPort"] = 81
    assert live.apply("MODIFIED", obj).relabeled == frozenset()
    obj = copy.deepcopy(obj)
    obj["metadata"]["labels"] = {"app": "z"}
    obj["status"] = {"phase": "Succeeded"}
    assert live.apply("MODIFIED", obj).relabeled == frozenset()


def new_pod(name: str, ns: str, ip: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"podIPs": [{"ip": ip}]}}


def test_pods_that_come_and_go_as_deltas_equal_full_compiles_and_full_builds(docs):
    from .test_watch import fingerprint
    rnd = random.Random(7)
    live = LiveCluster()
    live.load(docs)
    compiled = compile_cluster(live.cluster)
    seen = {ip for _, ip, _ in live.cluster.plane}
    for step in range(10):
        if step % 2:
            key = rnd.choice(sorted(k for k in live.cluster.pods if k.startswith("ns-")))
            ns, name = key.split("/")
            applied = live.apply("DELETED", live.objects[("Pod", ns, name)])
            assert applied.removed == {key}
        else:
            labels = {"app": f"app-{rnd.randrange(8)}", "tier": "web"}
            if step % 4 == 2:
                labels["canary"] = "5"                 # a new identity, which the canary policy names
            ns = f"ns-{rnd.randrange(4):02d}"
            applied = live.apply("ADDED", new_pod(f"new-{step}", ns, f"198.18.200.{step + 1}", labels))
            assert applied.added == {f"{ns}/new-{step}"}
        compiled = compile_next(compiled, applied.after, **delta_of([applied]))
        assert compiled.delta and compiled.cluster is live.cluster
        full = compile_cluster(live.cluster)
        assert verdicts(compiled) == verdicts(full), f"step {step}"
        seen |= {ip for _, ip, _ in live.cluster.plane}
        assert endpoints(compiled, seen) == endpoints(full, seen)       # the gone pods' are gone
        # The model equals a full build of the same objects (which keeps the
        # addresses it allocated before, as the delta does).
        assert fingerprint(live._build(live.objects)) == fingerprint(live.cluster)


def test_pods_a_delta_cannot_take_take_the_full_path(docs):
    live = LiveCluster()
    live.load(docs)
    taken = str(live.cluster.pod_address("ns-00/pod-0000"))     # allocated: the full build moves it
    assert live.apply("ADDED", new_pod("d", "ns-00", "198.18.201.9", {})).added
    no_ip = new_pod("a", "ns-00", "198.18.201.1", {})
    del no_ip["status"]
    other_ns = new_pod("b", "elsewhere", "198.18.201.2", {})
    assert not live.apply("ADDED", no_ip).added                  # allocated by the full build
    assert not live.apply("ADDED", other_ns).added               # a namespace is made
    applied = live.apply("ADDED", new_pod("c", "ns-00", taken, {}))
    assert not applied.added and not applied.rejected
    assert str(applied.after.pod_address("ns-00/c")) == taken != str(applied.after.pod_address("ns-00/pod-0000"))
    before = live.cluster
    applied = live.apply("ADDED", new_pod("e", "ns-00", "198.18.201.9", {}))    # d's
    assert not applied.added and "Duplicate value" in applied.rejected[0] and live.cluster is before


def test_deltas_with_cluster_wide_policies_equal_full_compiles():
    """examples/cluster-wide: pods moved to identities that exist and to new ones
    change which tiers' subjects and peers they are."""
    live = LiveCluster()
    live.load([d for f in sorted(os.listdir(EXAMPLE)) for d in _docs(os.path.join(EXAMPLE, f))])
    compiled = compile_cluster(live.cluster)
    for key, labels in (("hufflepuff/cedric-diggory", {"app": "x"}),
                        ("gryffindor/harry-potter", {"app": "cedric-diggory"}),
                        ("slytherin/draco-malfoy", {"app": "draco-malfoy", "new": "1"})):
        applied = relabel(live, key, labels)
        compiled = compile_relabeled(compiled, applied.after, applied.relabeled)
        assert verdicts(compiled) == verdicts(compile_cluster(live.cluster)), key
    # a namespace's label set that a tier selects, on a new pod: added as a delta
    applied = live.apply("ADDED", new_pod("luna", "gryffindor", "198.18.0.30", {"app": "luna"}))
    compiled = compile_next(compiled, applied.after, **delta_of([applied]))
    assert compiled.delta and verdicts(compiled) == verdicts(compile_cluster(live.cluster))


EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "cluster-wide")


def _docs(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_policies_put_and_removed_as_deltas_equal_full_compiles(docs):
    """NetworkPolicies added, changed and deleted: rows computed again, rule ids
    renumbered; verdicts and the rule ids that decided equal a full compile's."""
    import yaml as _yaml
    live = LiveCluster()
    live.load(docs)
    compiled = compile_cluster(live.cluster)
    pols = sorted(k for k in live.objects if k[0] == "NetworkPolicy")
    extra = _yaml.safe_load("""
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: aaa-first, namespace: ns-01}
    spec:
      podSelector: {matchLabels: {tier: web}}
      policyTypes: [Ingress, Egress]
      ingress: [{from: [{podSelector: {matchLabels: {app: app-3}}}], ports: [{port: http}]}]
      egress: [{to: [{namespaceSelector: {}}], ports: [{protocol: TCP, port: 443}]}]
    """)
    steps = [("ADDED", extra),                                          # ids after it all move
             ("DELETED", live.objects[pols[3]]),
             ("MODIFIED", {**live.objects[pols[7]], "spec": {**live.objects[pols[7]]["spec"],
                                                              "podSelector": {}}}),
             ("DELETED", extra)]
    for typ, obj in steps:
        applied = live.apply(typ, copy.deepcopy(obj))
        assert not applied.rejected and applied.policies, (typ, obj["metadata"])
        compiled = compile_next(compiled, applied.after, **delta_of([applied]))
        assert compiled.delta
        assert verdicts(compiled) == verdicts(compile_cluster(live.cluster)), (typ, obj["metadata"]["name"])


def test_policy_deltas_uncover_what_a_removed_rule_hid_and_unisolate():
    """A rule with a smaller id hides a larger one's ports in the reduced segments;
    removing it must give them back; removing the last policy must un-isolate."""
    import yaml as _yaml
    import textwrap
    base_docs = _yaml.safe_load_all(textwrap.dedent("""
    apiVersion: v1
    kind: Namespace
    metadata: {name: quiet}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: q1, namespace: quiet, labels: {app: a}}
    spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
    status: {podIPs: [{ip: 198.18.0.61}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: q2, namespace: quiet, labels: {app: b}}
    spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
    status: {podIPs: [{ip: 198.18.0.62}]}
    """))
    live = LiveCluster()
    live.load([d for d in base_docs if d])
    compiled = compile_cluster(live.cluster)

    def np_(name, selector, ports):
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": "quiet"},
                "spec": {"podSelector": selector, "ingress": [{"from": [{"podSelector": {}}], "ports": ports}]}}
    z_open = np_("z-open", {}, [{"protocol": "TCP", "port": 70, "endPort": 90}])
    a_narrow = np_("a-narrow", {"matchLabels": {"app": "a"}}, [{"protocol": "TCP", "port": 80}])
    seen = []
    for typ, obj in (("ADDED", z_open), ("ADDED", a_narrow), ("DELETED", a_narrow), ("DELETED", z_open)):
        applied = live.apply(typ, copy.deepcopy(obj))
        assert applied.policies == {f"quiet/{obj['metadata']['name']}"}
        compiled = compile_next(compiled, applied.after, **delta_of([applied]))
        assert compiled.delta
        got = verdicts(compiled)
        assert got == verdicts(compile_cluster(live.cluster)), (typ, obj["metadata"]["name"])
        _, (ok, rid) = got[("quiet/q2", "quiet/q1", 6, 80)]        # q1's ingress verdict
        names = {v: k[0] for k, v in compiled.rules.items()}
        seen.append((ok, names.get(rid)))
    # Allowed throughout: by z-open, by a-narrow (a smaller id), by z-open again, by nobody.
    assert seen == [(-1, "quiet/z-open"), (-1, "quiet/a-narrow"), (-1, "quiet/z-open"), (-1, None)]


def _chain(live, compiled, steps):
    """Applies (type, object) steps one by one as deltas; each must equal a full compile."""
    for typ, obj in steps:
        applied = live.apply(typ, copy.deepcopy(obj))
        assert not applied.rejected, applied.rejected
        compiled = compile_next(compiled, applied.after, **delta_of([applied]))
        assert compiled.delta, (typ, obj["metadata"]["name"])
        assert verdicts(compiled) == verdicts(compile_cluster(live.cluster)), (typ, obj["metadata"]["name"])
    return compiled


def _np(name, ns, selector, ingress, types=("Ingress",)):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": selector, "policyTypes": list(types), "ingress": ingress}}


def test_an_identity_whose_first_pod_went_is_still_selected_by_a_later_policy():
    """The pod that stood for an identity is deleted while another pod keeps the
    identity; a policy added afterwards must still isolate that identity."""
    live = LiveCluster()
    live.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
               new_pod("x", "a", "198.18.0.71", {"app": "x"})])
    compiled = compile_cluster(live.cluster)
    _chain(live, compiled, [("ADDED", new_pod("y", "a", "198.18.0.72", {"app": "x"})),
                            ("DELETED", new_pod("x", "a", "198.18.0.71", {"app": "x"})),
                            ("ADDED", new_pod("w", "a", "198.18.0.73", {"app": "w"})),
                            ("ADDED", _np("iso-x", "a", {"matchLabels": {"app": "x"}}, []))])


def test_peer_sets_of_policies_that_selected_nothing_are_not_left_stale():
    """A policy selecting nothing while a new identity arrives: when it selects again,
    its peers must include that identity."""
    live = LiveCluster()
    live.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
               new_pod("x", "a", "198.18.0.81", {"app": "x"}),
               _np("q", "a", {"matchLabels": {"app": "x"}}, [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}])])
    compiled = compile_cluster(live.cluster)
    q = live.objects[("NetworkPolicy", "a", "q")]
    nobody = {**q, "spec": {**q["spec"], "podSelector": {"matchLabels": {"app": "nobody"}}}}
    _chain(live, compiled, [("MODIFIED", nobody),
                            ("ADDED", new_pod("w", "a", "198.18.0.82", {"app": "web", "v": "new"})),
                            ("MODIFIED", q)])
