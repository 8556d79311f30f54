"""Where `netsem up` gets its cluster, and how it follows it: manifest files (re-read
on SIGHUP) or the API server (every change as it comes). Either way a new generation
keeps the switch ports of the interfaces that stay, so the running switch rewires
only the pods that came and went (Switch.rewire)."""

from __future__ import annotations

import json
from typing import Callable, Optional

from ..load.build import load_cluster
from ..model.cluster import Cluster


class FileSource:
    def __init__(self, files: list[str], config=None):
        self.files, self.config = files, config
        self.notes: list[str] = []
        self.texts: dict = {}            # path -> text of the last load that succeeded

    def initial(self) -> Cluster:
        texts: dict = {}
        cluster, self.notes = load_cluster(self.files, self.config, texts=texts)
        self.texts = texts
        return cluster

    def reload(self, previous: Cluster) -> Cluster:
        """The manifests again (ManifestErrors when they are bad), following `previous`."""
        texts: dict = {}
        cluster, self.notes = load_cluster(self.files, self.config, previous=previous, texts=texts)
        self.texts = texts
        return cluster

    def close(self) -> None:
        pass


def delta_of(applied: list) -> dict:
    """compile_next's keywords for the changes of one apply_many: the cluster before
    and what changed, when the changes were all of one kind a delta takes (labels
    only, or pods coming and going); else {} (a full compile)."""
    if any(a.before is not applied[0].before or a.after is not applied[0].after for a in applied):
        return {}                   # applied one by one: several generations, not one delta
    if all(a.relabeled for a in applied):
        return {"before": applied[0].before, "relabeled": frozenset().union(*(a.relabeled for a in applied))}
    if all(a.added or a.removed for a in applied):
        return {"before": applied[0].before, "added": applied[0].added, "removed": applied[0].removed}
    if all(a.policies for a in applied):
        return {"before": applied[0].before, "policies": applied[0].policies}
    return {}


class ApiSource:
    """The API server, through the watcher (`netsem up --kubeconfig`)."""

    def __init__(self, kubeconfig: Optional[str], context: Optional[str], config=None,
                 note: Callable[[str], None] = lambda s: None, resync_s: float = 300.0):
        from ..load.kube import Watcher, api_client
        from ..load.live import LiveCluster
        self.note = note
        self.watcher = Watcher(api_client(kubeconfig, context), resync_s=resync_s, on_note=note)
        self.live = LiveCluster(config)
        self.notes: list[str] = []
        self.delta = None

    def initial(self) -> Cluster:
        for m in self.live.load(self.watcher.start()):
            self.note(f"left out: {m}")
        self.notes = self.live.notes
        return self.live.cluster

    def poll(self, max_changes: int = 1000) -> tuple[Optional[Cluster], list]:
        """The changes waiting (at most max_changes), applied one by one: (the new
        cluster, or None when nothing changed; [(Change, rejected messages)]).
        self.delta: what compile_next needs to follow as a delta (delta_of)."""
        import queue
        waiting = []
        for _ in range(max_changes):
            try:
                waiting.append(self.watcher.changes.get_nowait())
            except queue.Empty:
                break
        self.delta = None
        if not waiting:
            return None, []
        # One build for all that queued up while the switch was busy.
        applied = self.live.apply_many([(ch.type, ch.obj) for ch in waiting])
        changed = any(a.changed for a in applied)
        if changed:
            self.delta = delta_of(applied)
        return (self.live.cluster if changed else None), [(ch, a.rejected) for ch, a in zip(waiting, applied)]

    @property
    def texts(self) -> dict:
        """The objects the cluster is built from, as one JSON List: what a recording
        (`netsem up --pcap`) keeps of each generation, so that it can be replayed."""
        return {"api-server.json": json.dumps({"apiVersion": "v1", "kind": "List",
                                               "items": list(self.live.objects.values())}, default=str)}

    def close(self) -> None:
        self.watcher.stop()
