"""Watching the Kubernetes API with the official client, as client-go's reflector does
(000, 002: an agent that follows the API server): per kind, a list that gives the
store and a resourceVersion, then a watch from there; bookmarks move the
resourceVersion on; "410 Gone" (the version was compacted away) relists and reports
what the watch missed; a dropped connection re-watches from the last version seen,
after a back-off; a periodic resync relists and reports drift (objects the watch
should have delivered and did not).

Objects travel as the API server's JSON (what `kubectl get -o json` prints), so the
loader that reads files reads them too (`live.LiveCluster`). Kinds that
the server does not serve (no Multus CRDs) are skipped with a note."""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

GONE = 410


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str                  # "" for the core group
    versions: tuple             # tried in order: the first the server serves is watched
    plural: str

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


KINDS = (
    Kind("Namespace", "", ("v1",), "namespaces"),
    Kind("Pod", "", ("v1",), "pods"),
    Kind("Service", "", ("v1",), "services"),
    Kind("EndpointSlice", "discovery.k8s.io", ("v1",), "endpointslices"),
    Kind("NetworkPolicy", "networking.k8s.io", ("v1",), "networkpolicies"),
    Kind("NetworkAttachmentDefinition", "k8s.cni.cncf.io", ("v1",), "network-attachment-definitions"),
    Kind("MultiNetworkPolicy", "k8s.cni.cncf.io", ("v1beta2", "v1beta1"), "multi-networkpolicies"),
    Kind("Node", "", ("v1",), "nodes"),
    Kind("ClusterNetworkPolicy", "policy.networking.k8s.io", ("v1alpha2",), "clusternetworkpolicies"),
    Kind("AdminNetworkPolicy", "policy.networking.k8s.io", ("v1alpha1",), "adminnetworkpolicies"),
    Kind("BaselineAdminNetworkPolicy", "policy.networking.k8s.io", ("v1alpha1",), "baselineadminnetworkpolicies"),
)


@dataclass
class Change:
    """One object change: type ADDED, MODIFIED or DELETED; `why` is "watch", "relist"
    (after 410 Gone) or "resync" (drift found by the periodic relist)."""
    type: str
    kind: str
    namespace: str
    name: str
    resource_version: str
    obj: Optional[dict]                 # the object (the last known one when DELETED)
    why: str = "watch"
    time: float = field(default_factory=time.time)

    @property
    def key(self) -> tuple:
        return (self.kind, self.namespace, self.name)


class KubeError(Exception):
    """No way to reach the API server (configuration, connection, permission)."""


def api_client(kubeconfig: Optional[str] = None, context: Optional[str] = None):
    """An ApiClient as kubectl finds its cluster: --kubeconfig, else $KUBECONFIG, else
    ~/.kube/config, else the in-cluster service account."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        if kubeconfig or os.path.exists(path):
            return config.new_client_from_config(config_file=path.split(os.pathsep)[0], context=context)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
    except (ConfigException, OSError, ValueError) as e:
        raise KubeError(f"kubeconfig {path}: {e}") from None
    raise KubeError("no kubeconfig (pass --kubeconfig, set KUBECONFIG, or run in a pod)")


def _raw_watch():
    from kubernetes import watch

    class RawWatch(watch.Watch):
        """Events as the server's JSON (raw_object), not deserialized into models."""
        def get_return_type(self, func):
            return None
    return RawWatch()


class Informer:
    """List and watch of one kind; pushes Changes into `out`. Its store is the
    objects by (namespace, name) as last seen."""

    def __init__(self, api, kind: Kind, version: str, out: queue.Queue, watch_timeout: int = 240,
                 resync_s: float = 300.0, backoff_max: float = 30.0):
        from kubernetes import client
        self.api, self.kind, self.version, self.out = api, kind, version, out
        self.watch_timeout, self.resync_s, self.backoff_max = watch_timeout, resync_s, backoff_max
        self.store: dict[tuple, dict] = {}
        self.resource_version = ""
        self.stopping = threading.Event()
        self.relists = self.reconnects = self.bookmarks = 0
        self._watch = None
        if kind.group == "" or kind.group in ("discovery.k8s.io", "networking.k8s.io"):
            fn = {"Namespace": client.CoreV1Api(api).list_namespace,
                  "Pod": client.CoreV1Api(api).list_pod_for_all_namespaces,
                  "Service": client.CoreV1Api(api).list_service_for_all_namespaces,
                  "EndpointSlice": client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
                  "NetworkPolicy": client.NetworkingV1Api(api).list_network_policy_for_all_namespaces,
                  "Node": client.CoreV1Api(api).list_node}[kind.kind]
            self._list, self._args = fn, ()
        else:
            self._list = client.CustomObjectsApi(api).list_cluster_custom_object
            self._args = (kind.group, version, kind.plural)

    # -- list ------------------------------------------------------------------------
    def list(self) -> tuple[dict, str]:
        """The server's objects now and the list's resourceVersion."""
        resp = self._list(*self._args, _preload_content=False, _request_timeout=(10, 60))
        body = json.loads(resp.data)
        items = {}
        for it in body.get("items") or []:
            it.setdefault("apiVersion", self.kind.api_version(self.version))
            it.setdefault("kind", self.kind.kind)
            meta = it.get("metadata") or {}
            items[(meta.get("namespace", ""), meta.get("name", ""))] = it
        return items, (body.get("metadata") or {}).get("resourceVersion", "")

    def sync(self, why: str) -> int:
        """Lists and brings the store to the server's state, reporting each difference
        as a Change (none on the first list: that is the initial state). Returns how
        many objects differed."""
        items, rv = self.list()
        first = not self.resource_version and why == "initial"
        n = 0
        for key, obj in items.items():
            old = self.store.get(key)
            if old is None or _rv(old) != _rv(obj):
                n += 1
                if not first:
                    self._emit("MODIFIED" if old is not None else "ADDED", obj, why)
        for key in set(self.store) - set(items):
            n += 1
            self._emit("DELETED", self.store[key], why)
        self.store = items
        self.resource_version = rv
        return n

    # -- watch ---------------------------------------------------------------------
    def run(self) -> None:
        """The watch loop (a thread's body) until stop()."""
        from kubernetes.client.rest import ApiException
        delay, next_resync = 0.5, time.monotonic() + self.resync_s
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= next_resync:
                    self.sync("resync")
                    next_resync = time.monotonic() + self.resync_s
                self._watch_once(min(self.watch_timeout, max(1, int(next_resync - time.monotonic()) + 1)))
                delay = 0.5
            except ApiException as e:
                if self.stopping.is_set():
                    break
                if e.status == GONE:
                    self.relists += 1
                    self._safe_sync("relist")
                    continue
                delay = self._back_off(delay)
            except Exception:      # connection reset, timeout, bad chunk: re-watch later
                if self.stopping.is_set():
                    break
                self.reconnects += 1
                delay = self._back_off(delay)

    def _watch_once(self, timeout: int) -> None:
        self._watch = w = _raw_watch()
        for ev in w.stream(self._list, *self._args, resource_version=self.resource_version,
                           allow_watch_bookmarks=True, timeout_seconds=timeout,
                           _request_timeout=(10, timeout + 30)):
            if self.stopping.is_set():
                w.stop()
                break
            obj, typ = ev.get("raw_object") or {}, ev.get("type")
            rv = _rv(obj)
            if typ == "BOOKMARK":
                self.bookmarks += 1
                self.resource_version = rv or self.resource_version
                continue
            if typ not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            obj.setdefault("apiVersion", self.kind.api_version(self.version))
            obj.setdefault("kind", self.kind.kind)
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if typ == "DELETED":
                self.store.pop(key, None)
            else:
                self.store[key] = obj
            self.resource_version = rv or self.resource_version
            self._emit(typ, obj, "watch")

    def _safe_sync(self, why: str) -> None:
        try:
            self.sync(why)
        except Exception:
            self.reconnects += 1
            self._back_off(0.5)

    def _back_off(self, delay: float) -> float:
        self.stopping.wait(delay * (0.5 + random.random()))
        return min(self.backoff_max, delay * 2)

    def _emit(self, typ: str, obj: dict, why: str) -> None:
        meta = obj.get("metadata") or {}
        self.out.put(Change(typ, self.kind.kind, meta.get("namespace", ""), meta.get("name", ""),
                            _rv(obj), obj, why))

    def stop(self) -> None:
        self.stopping.set()
        w = self._watch
        if w is not None:
            w.stop()
            resp = getattr(w, "_resp", None)
            if resp is not None:       # wake the reading thread now, not at the next event
                try:
                    resp.shutdown() if hasattr(resp, "shutdown") else resp.close()
                except Exception:
                    pass


def _rv(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Watcher:
    """Every kind netsem models that the server serves: the initial lists, then one
    informer thread per kind, all feeding one queue of Changes."""

    def __init__(self, api, resync_s: float = 300.0, watch_timeout: int = 240,
                 on_note: Callable[[str], None] = lambda s: None):
        self.api, self.resync_s, self.watch_timeout, self.on_note = api, resync_s, watch_timeout, on_note
        self.changes: queue.Queue = queue.Queue()
        self.informers: list[Informer] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> list[dict]:
        """Lists every kind (the initial state, returned as objects) and starts watching.
        Raises KubeError when the server cannot be listed."""
        from kubernetes.client.rest import ApiException
        objects = []
        for kind in KINDS:
            informer = None
            for version in kind.versions:
                inf = Informer(self.api, kind, version, self.changes, self.watch_timeout, self.resync_s)
                try:
                    inf.sync("initial")
                except ApiException as e:
                    if e.status == 404:
                        continue
                    raise KubeError(f"listing {kind.plural}: {e.status} {e.reason}") from None
                except Exception as e:
                    raise KubeError(f"listing {kind.plural}: {e}") from None
                informer = inf
                break
            if informer is None:
                self.on_note(f"the server does not serve {kind.kind} ({kind.group}): not watched")
                continue
            self.informers.append(informer)
            objects += list(informer.store.values())
        for inf in self.informers:
            t = threading.Thread(target=inf.run, name=f"watch-{inf.kind.plural}", daemon=True)
            t.start()
            self._threads.append(t)
        return objects

    def stop(self) -> None:
        for inf in self.informers:
            inf.stop()
        for t in self._threads:
            t.join(timeout=2)
