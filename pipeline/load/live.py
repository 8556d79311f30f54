"""A cluster that changes: the objects a watcher (or a re-read of files) delivers,
kept by (kind, namespace, name), and the model built from them after each change.

All or nothing per change: a change whose object the loader refuses (or that breaks
the cluster, such as an address taken twice) is rejected with the loader's message,
and the model stays what it was. Objects are documents named `Kind ns/name`, so
messages read `Pod shop/web-0:0:status.podIPs[0].ip: ...`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..model.addresses import AddressError
from ..model.cluster import Cluster, ClusterConfig
from .build import build_cluster
from .errors import ManifestErrors
from .manifests import Document, LoadResult, parse_documents


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return (obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def _name(key: tuple) -> str:
    kind, ns, name = key
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


@dataclass
class Applied:
    before: Cluster
    after: Cluster                   # the same object as before when rejected
    rejected: list = field(default_factory=list)     # the loader's messages
    relabeled: frozenset = frozenset()  # pod keys, when the change was only their labels
    added: frozenset = frozenset()      # pod keys, when the change was only pods coming...
    removed: frozenset = frozenset()    # ... and going (Cluster.with_pods)
    policies: frozenset = frozenset()   # NetworkPolicy keys, when only they changed

    @property
    def changed(self) -> bool:
        return self.after is not self.before


class LiveCluster:
    def __init__(self, config: Optional[ClusterConfig] = None):
        self.config = config
        self.objects: dict[tuple, dict] = {}
        self.cluster: Cluster = Cluster(config)
        self.notes: list[str] = []
        self._parsed: dict[tuple, tuple] = {}     # key -> (the object, its LoadResult)

    def _build(self, objects: dict) -> Cluster:
        """The cluster of `objects`; each object parsed once (a change parses only
        what changed). Interfaces keep their switch ports across generations (a
        running switch rewires only the pods that came and went)."""
        result = LoadResult()
        parsed = {}
        for k, obj in sorted(objects.items()):
            hit = self._parsed.get(k)
            if hit is None or hit[0] is not obj:
                hit = (obj, parse_documents([Document(_name(k), 0, obj)]))
            parsed[k] = hit
            result.objects += hit[1].objects
            result.notes += hit[1].notes
        cluster = build_cluster(result, self.config, self.cluster)
        self._parsed, self.notes = parsed, result.notes
        return cluster

    def _labels_only(self, changes: list) -> Optional[dict]:
        """{pod key: (object key, parse cache entry, parsed Pod)} when every change is a pod whose
        labels, and nothing else, changed (a delta: Cluster.relabeled), else None."""
        out: dict = {}
        for typ, obj in changes:
            k = _key(obj)
            old = self._parsed.get(k)
            if typ != "MODIFIED" or k[0] != "Pod" or old is None:
                return None
            try:
                res = parse_documents([Document(_name(k), 0, obj)])
            except ManifestErrors:
                return None             # the full path reports it
            if len(res.objects) != 1 or len(old[1].objects) != 1 or res.notes != old[1].notes:
                return None
            new_pod, old_pod = res.objects[0][1], old[1].objects[0][1]
            # Pod equality leaves labels and networks out (they are not its identity).
            if new_pod != old_pod or new_pod.networks != old_pod.networks or \
                    new_pod.network_status != old_pod.network_status:
                return None
            out[new_pod.key] = (k, (obj, res), new_pod)
        return out

    def _policies_only(self, changes: list) -> Optional[tuple]:
        """({policy key: (object key, parse cache entry, NetworkPolicy)}, {policy key:
        object key}) when every change is a NetworkPolicy put or deleted in a
        namespace that exists (Cluster.with_policies), else None."""
        put, removed = {}, {}
        for typ, obj in changes:
            k = _key(obj)
            if k[0] != "NetworkPolicy":
                return None
            pk = f"{k[1]}/{k[2]}"
            if pk in put or pk in removed:
                return None
            if typ == "DELETED":
                if k not in self._parsed:
                    return None
                removed[pk] = k
                continue
            try:
                res = parse_documents([Document(_name(k), 0, obj)])
            except ManifestErrors:
                return None
            if len(res.objects) != 1 or res.notes or k[1] not in self.cluster.namespaces:
                return None
            put[pk] = (k, (obj, res), res.objects[0][1])
        return put, removed

    def _pods_only(self, changes: list) -> Optional[tuple]:
        """({pod key: (object key, parse cache entry, Pod)}, {pod key: object key})
        when every change is a pod added or deleted that a delta can take
        (Cluster.with_pods: running, its own addresses given, on the cluster network
        only, in a namespace that exists), else None."""
        added, removed = {}, {}
        for typ, obj in changes:
            k = _key(obj)
            if k[0] != "Pod":
                return None
            pk = f"{k[1]}/{k[2]}"
            if typ == "DELETED":
                old = self._parsed.get(k)
                pod = self.cluster.pods.get(pk)
                if old is None or pod is None or pk in added or pod.networks or \
                        len(self.cluster.plane.attachments_of(pk)) != 1:
                    return None
                removed[pk] = k
                continue
            if typ != "ADDED" or k in self.objects or pk in removed or pk in added:
                return None
            try:
                res = parse_documents([Document(_name(k), 0, obj)])
            except ManifestErrors:
                return None
            pod = res.objects[0][1] if len(res.objects) == 1 else None
            if pod is None or not pod.ips or pod.host_network or pod.finished or pod.networks or \
                    res.notes or pod.namespace not in self.cluster.namespaces:
                return None
            added[pk] = (k, (obj, res), pod)
        return added, removed

    def load(self, objects: Iterable[dict]) -> list[str]:
        """The initial state. Objects the loader refuses are left out (and their
        messages returned), so one bad object does not keep the rest from loading."""
        self.objects = {_key(o): o for o in objects}
        rejected: list[str] = []
        for _ in range(len(self.objects) + 1):
            try:
                self.cluster = self._build(self.objects)
                return rejected
            except ManifestErrors as e:
                bad = {err.source for err in e.errors}
                rejected += [str(err) for err in e.errors]
                kept = {k: o for k, o in self.objects.items() if _name(k) not in bad}
                if len(kept) == len(self.objects):
                    raise
                self.objects = kept
        return rejected

    def apply(self, typ: str, obj: dict) -> Applied:
        """One change: ADDED or MODIFIED puts the object, DELETED removes it."""
        return self.apply_many([(typ, obj)])[0]

    def apply_many(self, changes: list) -> list[Applied]:
        """Several changes [(type, object)], one build when they are all good (what a
        follower does with the changes that queued up while it was busy); otherwise
        one by one, each all or nothing. One Applied per change."""
        objects = dict(self.objects)
        for typ, obj in changes:
            if typ == "DELETED":
                objects.pop(_key(obj), None)
            else:
                objects[_key(obj)] = obj
        before = self.cluster
        if objects == self.objects:
            return [Applied(before, before) for _ in changes]
        relabels = self._labels_only(changes)
        if relabels is not None:
            after = before.relabeled({k: p.labels for k, (_, _, p) in relabels.items()})
            for key, hit, _ in relabels.values():
                self._parsed[key] = hit
            self.objects, self.cluster = objects, after
            moved = frozenset(relabels)
            return [Applied(before, after, relabeled=moved) for _ in changes]
        pols = self._policies_only(changes)
        if pols is not None:
            put, removed = pols
            after = before.with_policies([p for _, _, p in put.values()], list(removed))
            for key, hit, _ in put.values():
                self._parsed[key] = hit
            for key in removed.values():
                self._parsed.pop(key, None)
            self.objects, self.cluster = objects, after
            return [Applied(before, after, policies=frozenset(put) | frozenset(removed)) for _ in changes]
        came_went = self._pods_only(changes)
        if came_went is not None:
            added, removed = came_went
            try:
                after = before.with_pods([p for _, _, p in added.values()], list(removed))
            except AddressError:
                after = None                  # the full path says which document
            if after is not None:
                for key, hit, _ in added.values():
                    self._parsed[key] = hit
                for key in removed.values():
                    self._parsed.pop(key, None)
                self.objects, self.cluster = objects, after
                return [Applied(before, after, added=frozenset(added), removed=frozenset(removed))
                        for _ in changes]
        if len(changes) > 1:
            try:
                after = self._build(objects)
            except ManifestErrors:
                return [self.apply_many([c])[0] for c in changes]
            self.objects, self.cluster = objects, after
            return [Applied(before, after) for _ in changes]
        try:
            after = self._build(objects)
        except ManifestErrors as e:
            return [Applied(before, before, [str(err) for err in e.errors])]
        self.objects, self.cluster = objects, after
        return [Applied(before, after)]
