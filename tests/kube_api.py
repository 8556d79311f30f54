"""An in-test Kubernetes API server: the list and watch protocol as the API
conventions document it, over real HTTP, for the real `kubernetes` client.

- GET a collection: `{"kind": "PodList", "metadata": {"resourceVersion"}, "items"}`,
  items without kind/apiVersion (as the server sends typed lists).
- `?watch=1&resourceVersion=N`: a chunked stream of `{"type", "object"}` lines, the
  events after N, then new ones as they happen, until `timeoutSeconds`; BOOKMARK
  events when asked (`allowWatchBookmarks`) and idle; an ERROR event with a Status
  of code 410 ("Expired") when N is older than the compacted history.
- A script side: apply, delete, compact, drop every watch connection, and changes
  made without any watch event (what a resync must find as drift).
Only loopback, only for the tests."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RESOURCES = {
    "/api/v1/namespaces": ("Namespace", "v1"),
    "/api/v1/pods": ("Pod", "v1"),
    "/api/v1/services": ("Service", "v1"),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1"),
    "/apis/networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", "networking.k8s.io/v1"),
    "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions": ("NetworkAttachmentDefinition", "k8s.cni.cncf.io/v1"),
    "/apis/k8s.cni.cncf.io/v1beta1/multi-networkpolicies": ("MultiNetworkPolicy", "k8s.cni.cncf.io/v1beta1"),
    "/api/v1/nodes": ("Node", "v1"),
    "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies":
        ("AdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1"),
    "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies":
        ("BaselineAdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1"),
}
BY_KIND = {kind: path for path, (kind, _) in RESOURCES.items()}


class FakeApiServer:
    def __init__(self, crds: bool = True, bookmark_interval: float = 0.2):
        self.rv = 1
        self.objects: dict[str, dict] = {p: {} for p in RESOURCES}
        self.log: list[tuple] = []            # (rv, path, type, object)
        self.compacted = 0                    # watches from a version below this get 410
        self.crds = crds
        self.bookmark_interval = bookmark_interval
        self.cond = threading.Condition()
        self.watches: set = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server._get(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass                 # clients that hang up mid-request (dropped watches) are expected

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, path) -> str:
        with open(path, "w") as f:
            f.write(f"apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                    f"clusters: [{{name: test, cluster: {{server: '{self.url}'}}}}]\n"
                    f"users: [{{name: test, user: {{token: test-token}}}}]\n"
                    f"contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n")
        return str(path)

    def close(self) -> None:
        self.drop_watches()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the script side -------------------------------------------------------------
    def apply(self, obj: dict, silent: bool = False) -> str:
        """Creates or replaces `obj` (by kind, namespace, name); returns its new
        resourceVersion. silent: no watch event (drift only a relist finds)."""
        path = BY_KIND[obj["kind"]]
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            typ = "MODIFIED" if key in self.objects[path] else "ADDED"
            self.objects[path][key] = obj
            if not silent:
                self.log.append((self.rv, path, typ, obj))
            self.cond.notify_all()
            return str(self.rv)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        path = BY_KIND[kind]
        with self.cond:
            obj = self.objects[path].pop((namespace, name))
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.log.append((self.rv, path, "DELETED", obj))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forgets the history: a watch from any version seen so far gets 410 Gone."""
        with self.cond:
            self.rv += 1
            self.compacted = self.rv
            self.log = []
            self.cond.notify_all()

    def drop_watches(self) -> None:
        """Cuts every open watch connection mid-stream."""
        with self.cond:
            for s in list(self.watches):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.cond.notify_all()

    def all_objects(self) -> list[dict]:
        with self.cond:
            return [copy.deepcopy(o) for objs in self.objects.values() for o in objs.values()]

    # -- the protocol ------------------------------------------------------------------
    def _served(self, path: str) -> bool:
        return path in RESOURCES and (self.crds or ("k8s.cni.cncf.io" not in path and "policy.networking" not in path))

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append(h.path)
        if not self._served(url.path):
            self._json(h, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": "the server could not find "
                                "the requested resource"})
            return
        if q.get("watch") in ("1", "true", "True"):
            self._watch(h, url.path, q)
            return
        kind, api = RESOURCES[url.path]
        with self.cond:
            items = []
            for o in self.objects[url.path].values():
                o = copy.deepcopy(o)
                if "." not in api.split("/")[0] or api.startswith(("discovery.", "networking.")):
                    o.pop("kind", None)          # typed lists carry no kind/apiVersion per item
                    o.pop("apiVersion", None)
                items.append(o)
            body = {"kind": f"{kind}List", "apiVersion": api, "metadata": {"resourceVersion": str(self.rv)},
                    "items": items}
        self._json(h, 200, body)

    @staticmethod
    def _json(h, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h, path: str, q: dict) -> None:
        start = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 30)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "True", "1")
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        sock = h.connection
        with self.cond:
            self.watches.add(sock)

        def send(event: dict) -> None:
            data = (json.dumps(event) + "\n").encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()
        try:
            if start and start < self.compacted:
                send({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                  "reason": "Expired", "code": 410,
                                                  "message": f"too old resource version: {start} ({self.compacted})"}})
                return
            seen, end = start, time.monotonic() + timeout
            last_sent = time.monotonic()
            while time.monotonic() < end:
                with self.cond:
                    pending = [e for e in self.log if e[0] > seen and e[1] == path]
                    if not pending:
                        self.cond.wait(min(self.bookmark_interval, max(0.0, end - time.monotonic())))
                        pending = [e for e in self.log if e[0] > seen and e[1] == path]
                    now_rv = self.rv
                    if sock not in self.watches:
                        return
                for rv, _, typ, obj in pending:
                    send({"type": typ, "object": obj})
                    seen = rv
                    last_sent = time.monotonic()
                if bookmarks and not pending and time.monotonic() - last_sent >= self.bookmark_interval:
                    kind, api = RESOURCES[path]
                    send({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api,
                                                         "metadata": {"resourceVersion": str(now_rv)}}})
                    seen = max(seen, now_rv)
                    last_sent = time.monotonic()
        except OSError:
            return
        finally:
            with self.cond:
                self.watches.discard(sock)
            try:
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
            except OSError:
                pass
