"""Following a live cluster (issue 10): the real `kubernetes` client against an
in-test API server (tests/kube_api.py) speaking list and watch: chunked events,
resourceVersions, bookmarks, 410 Gone, dropped connections, changes made without an
event. The model after each sequence equals the model loaded from the same objects
as files; `netsem watch` prints exactly the changes the pair-by-pair primitive
gives."""

import json
import os
import queue
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.load.build import load_cluster
from pipeline.load.kube import Watcher, api_client
from pipeline.load.live import LiveCluster
from pipeline.model.connections import Connections, open_pod_connection

from .kube_api import FakeApiServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOP = os.path.join(ROOT, "examples", "shop")
DENY_BACKEND = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny-backend", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "backend"}}, "policyTypes": ["Ingress"]}}


def shop_objects() -> list:
    """The example as an API server holds it: running pods have their addresses."""
    out = []
    for f in sorted(os.listdir(SHOP)):
        with open(os.path.join(SHOP, f)) as fh:
            out += [d for d in yaml.safe_load_all(fh) if d]
    for i, d in enumerate(d for d in out if d["kind"] == "Pod"):
        d.setdefault("status", {}).setdefault("podIPs", [{"ip": f"198.18.0.{i + 1}"}])
    return out


@pytest.fixture
def server(tmp_path):
    srv = FakeApiServer()
    for obj in shop_objects():
        srv.apply(obj)
    yield srv
    srv.close()


def fingerprint(c) -> tuple:
    """What the model knows: every address and what sits there, labels, policies,
    Services and their backends."""
    return (sorted((d, str(ip), str(e)) for d, ip, e in c.plane),
            sorted((k, sorted(p.labels.items()), p.phase) for k, p in c.pods.items()),
            sorted((k, repr(p)) for k, p in c.policies.items()),
            sorted((k, repr(p)) for k, p in c.multi_policies.items()),
            sorted((k, repr(p)) for k, p in c.admin_policies.items()),
            sorted((k, repr(n), sorted(n.labels.items())) for k, n in c.nodes.items()),
            sorted((k, c.lookup_service_to_pod_mappings(k)) for k in c.services),
            sorted(c.namespaces))


def from_files(srv, tmp_path):
    f = tmp_path / "now.json"
    f.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": srv.all_objects()}))
    return load_cluster([str(f)])[0]


def follow(watcher, live, until, timeout=10.0):
    """Applies changes until `until(live)` holds; returns the changes seen."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        if until(live):
            return seen
        try:
            ch = watcher.changes.get(timeout=0.1)
        except queue.Empty:
            continue
        assert not live.apply(ch.type, ch.obj).rejected
        seen.append(ch)
    raise AssertionError(f"not reached in {timeout} s; seen {[(c.type, c.kind, c.name, c.why) for c in seen]}")


NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.19.128.9"}]}}
ADMIN_DENY = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
              "metadata": {"name": "no-frontend"},
              "spec": {"priority": 3, "subject": {"namespaces": {}},
                       "ingress": [{"name": "no-frontend", "action": "Deny",
                                    "from": [{"pods": {"namespaceSelector": {},
                                                       "podSelector": {"matchLabels": {"app": "frontend"}}}}]}]}}


def test_the_model_follows_the_watch_and_equals_the_files(server, tmp_path):
    watcher = Watcher(api_client(server.kubeconfig(tmp_path / "kc")), resync_s=60)
    live = LiveCluster()
    try:
        assert live.load(watcher.start()) == []
        assert fingerprint(live.cluster) == fingerprint(from_files(server, tmp_path))
        steps = [
            lambda: server.apply(DENY_BACKEND),
            lambda: server.apply({**server.objects["/api/v1/pods"][("shop", "frontend-1")],
                                  "metadata": {**server.objects["/api/v1/pods"][("shop", "frontend-1")]["metadata"],
                                               "labels": {"app": "other"}}}),
            lambda: server.delete("Pod", "shop", "backend-0"),
            lambda: server.delete("NetworkPolicy", "shop", "deny-backend"),
            lambda: server.apply(NODE),
            lambda: server.apply(ADMIN_DENY),
            lambda: server.delete("AdminNetworkPolicy", "", "no-frontend"),
        ]
        for step in steps:
            step()
            want = fingerprint(from_files(server, tmp_path))
            seen = follow(watcher, live, lambda lv: fingerprint(lv.cluster) == want)
            assert [c.why for c in seen] == ["watch"]            # one event, from the watch
        end = time.monotonic() + 5
        while not all(i.bookmarks for i in watcher.informers) and time.monotonic() < end:
            time.sleep(0.05)
        assert all(i.bookmarks for i in watcher.informers)      # idle watches get bookmarks
    finally:
        watcher.stop()


def test_gone_relists_a_dropped_connection_rewatches_and_resync_finds_drift(server, tmp_path):
    watcher = Watcher(api_client(server.kubeconfig(tmp_path / "kc")), resync_s=3.0)
    live = LiveCluster()
    try:
        live.load(watcher.start())
        pods = [i for i in watcher.informers if i.kind.kind == "Pod"][0]
        # History compacted while a change happens: the watch gets 410 and relists.
        server.compact()
        server.delete("Pod", "shop", "frontend-0")
        server.drop_watches()
        want = fingerprint(from_files(server, tmp_path))
        seen = follow(watcher, live, lambda lv: fingerprint(lv.cluster) == want)
        assert ("DELETED", "frontend-0") in [(c.type, c.name) for c in seen]
        assert pods.relists >= 1
        # Every informer past the compaction (relisted, or told by a bookmark) first.
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(
                int(i.resource_version or 0) >= server.compacted for i in watcher.informers):
            time.sleep(0.05)
        # A dropped connection: re-watched from the last version, nothing relisted.
        relists = pods.relists
        server.drop_watches()
        server.apply(DENY_BACKEND)
        want = fingerprint(from_files(server, tmp_path))
        seen = follow(watcher, live, lambda lv: fingerprint(lv.cluster) == want)
        assert [(c.kind, c.why) for c in seen] == [("NetworkPolicy", "watch")] and pods.relists == relists
        # A change no watch delivers: the resync finds it and says so.
        obj = server.objects["/api/v1/pods"][("data", "db-0")]
        server.apply({**obj, "metadata": {**obj["metadata"], "labels": {"app": "db", "drift": "yes"}}}, silent=True)
        want = fingerprint(from_files(server, tmp_path))
        seen = follow(watcher, live, lambda lv: fingerprint(lv.cluster) == want)
        assert [(c.type, c.name, c.why) for c in seen] == [("MODIFIED", "db-0", "resync")]
    finally:
        watcher.stop()


def test_a_bad_object_is_rejected_and_the_model_stays(server, tmp_path):
    watcher = Watcher(api_client(server.kubeconfig(tmp_path / "kc")))
    live = LiveCluster()
    try:
        live.load(watcher.start())
        before = fingerprint(live.cluster)
        server.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "namespace": "shop"},
                      "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 70000}]}]}})
        ch = watcher.changes.get(timeout=5)
        applied = live.apply(ch.type, ch.obj)
        assert applied.rejected == ["Pod shop/odd:0:spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]
        assert fingerprint(live.cluster) == before and not applied.changed
    finally:
        watcher.stop()


def test_kinds_the_server_does_not_serve_are_skipped_with_a_note(tmp_path):
    srv = FakeApiServer(crds=False)
    notes = []
    watcher = Watcher(api_client(srv.kubeconfig(tmp_path / "kc")), on_note=notes.append)
    try:
        watcher.start()
        assert [i.kind.kind for i in watcher.informers] == ["Namespace", "Pod", "Service", "EndpointSlice",
                                                            "NetworkPolicy", "Node"]
        for kind in ("MultiNetworkPolicy", "AdminNetworkPolicy", "ClusterNetworkPolicy"):
            assert any(kind in n for n in notes), notes
    finally:
        watcher.stop()
        srv.close()


def expected_change(before, after, port: int) -> tuple:
    """(lost, gained) TCP/port pairs by the pair-by-pair primitive."""
    def allowed(c):
        pods = c.pod_list()
        return {(a.key, b.key) for a in pods for b in pods
                if open_pod_connection(c, Connections(), a, b, "TCP", port).allowed}
    b, a = allowed(before), allowed(after)
    return sorted(b - a), sorted(a - b)


def test_netsem_watch_prints_exactly_the_expected_changes(server, tmp_path):
    kc = server.kubeconfig(tmp_path / "kc")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "watch", "--kubeconfig", kc, "-o", "jsonl",
                             "--ports", "8080", "--protocols", "TCP", "--max-pairs", "0", "--duration", "20"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("netsem watch:"):
            line = proc.stderr.readline()
        assert "watching namespaces, pods" in line
        states = [from_files(server, tmp_path)]
        label = {**server.objects["/api/v1/pods"][("shop", "frontend-1")]}
        label["metadata"] = {**label["metadata"], "labels": {"app": "other"}}
        allow = server.objects["/apis/networking.k8s.io/v1/networkpolicies"][("shop", "backend-allow-frontend")]
        steps = (lambda: server.apply(DENY_BACKEND),        # backend is isolated already: nothing changes
                 lambda: server.apply(label),
                 lambda: server.delete("NetworkPolicy", "shop", "backend-allow-frontend"),
                 lambda: server.apply(allow))
        for step in steps:
            step()
            states.append(from_files(server, tmp_path))
            time.sleep(1.0)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    records = [json.loads(x) for x in out.splitlines()]
    assert [(r["cause"]["kind"], r["cause"]["type"], r["summary"].split(":")[0]) for r in records] == [
        ("Pod", "MODIFIED", "pod shop/frontend-1 changed"),
        ("NetworkPolicy", "DELETED", "policy shop/backend-allow-frontend deleted"),
        ("NetworkPolicy", "ADDED", "policy shop/backend-allow-frontend applied")]
    assert expected_change(states[0], states[1], 8080) == ([], [])     # the no-op printed nothing
    for r, before, after in zip(records, states[1:], states[2:]):
        lost, gained = expected_change(before, after, 8080)
        [c] = r["changes"]
        assert (c["protocol"], c["port"]) == ("TCP", 8080)
        assert [(p["from"], p["to"]) for p in c["lostPairs"]] == lost and c["lost"] == len(lost)
        assert [(p["from"], p["to"]) for p in c["gainedPairs"]] == gained and c["gained"] == len(gained)
        assert lost or gained


def test_a_new_generation_keeps_the_ports_and_allocated_addresses_of_what_stays():
    """Pods without addresses in their objects (files) are allocated in name order;
    across generations those that stay keep theirs, and every interface its port, so
    a running switch rewires only what came and went."""
    objects = [o for o in shop_objects()]
    for o in objects:
        o.get("status", {}).pop("podIPs", None)
    live = LiveCluster()
    live.load(objects)
    before = {k: (live.cluster.pod_address(k), live.cluster.attachment(k).port) for k in live.cluster.pods}
    gone = next(o for o in objects if o["metadata"]["name"] == "frontend-0")
    assert not live.apply("DELETED", gone).rejected
    after = {k: (live.cluster.pod_address(k), live.cluster.attachment(k).port) for k in live.cluster.pods}
    assert after == {k: v for k, v in before.items() if k != "shop/frontend-0"}
    fresh = LiveCluster()                       # what a fresh build would have done instead
    fresh.load([o for o in objects if o is not gone])
    assert any(fresh.cluster.pod_address(k) != v[0] for k, v in after.items())
    new = {**gone, "metadata": {**gone["metadata"], "name": "frontend-7"}}
    assert not live.apply("ADDED", new).rejected
    assert live.cluster.attachment("shop/frontend-7").port not in {p for _, p in after.values()}


def test_changes_that_queued_up_are_built_once_and_a_bad_one_alone_is_rejected():
    objects = shop_objects()
    live = LiveCluster()
    live.load(objects)
    first = live.cluster
    pod = next(o for o in objects if o["metadata"]["name"] == "frontend-0")
    relabel = {**pod, "metadata": {**pod["metadata"], "labels": {"app": "other"}}}
    bad = {**pod, "metadata": {**pod["metadata"], "name": "Bad"}}
    applied = live.apply_many([("MODIFIED", relabel), ("ADDED", bad), ("DELETED", DENY_BACKEND)])
    assert not applied[0].rejected and applied[1].rejected and not applied[2].rejected
    assert live.cluster.pods["shop/frontend-0"].labels == {"app": "other"} and "shop/Bad" not in live.cluster.pods
    other = next(o for o in objects if o["metadata"]["name"] == "frontend-1")
    backup = next(o for o in objects if o["metadata"]["name"] == "backup-0")
    good = live.apply_many([("MODIFIED", {**other, "metadata": {**other["metadata"], "labels": {}}}),
                            ("DELETED", backup)])
    assert all(a.changed for a in good) and good[0].after is good[1].after        # one build for both
    assert live.cluster.pods["shop/frontend-1"].labels == {} and "data/backup-0" not in live.cluster.pods
    assert live.apply_many([("DELETED", backup)])[0].changed is False             # nothing to do
    assert live.cluster is not first
