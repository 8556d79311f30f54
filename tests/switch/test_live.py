"""`netsem up` following its cluster (issue 10): a pod that comes is wired into the
running switch, one that goes is unwired, interfaces that stay keep their ports and
their established connections, from files on SIGHUP and from an API server's watch
with --kubeconfig."""
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import yaml

from pipeline.switch.netns import NETNS_DIR, STATE_DIR, down, in_netns

from ..kube_api import FakeApiServer
from .test_up import EXAMPLES, NETSEM, ROOT

NEW_POD = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "frontend-9", "namespace": "shop", "labels": {"app": "frontend", "tier": "web"}},
           "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 80}]}]}}


class Up:
    """`netsem up` in a subprocess; its stderr lines read by a thread."""

    def __init__(self, args):
        self.prefix = "nsm" + secrets.token_hex(2)
        self.proc = subprocess.Popen(NETSEM + ["up", "--prefix", self.prefix, "--stats-interval", "100",
                                               "--cluster-dns", "none"] + args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not seen; netsem up said: {self.seen[-20:]}")

    def state(self) -> dict:
        with open(os.path.join(STATE_DIR, f"{self.prefix}.json")) as f:
            return json.load(f)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        down(self.prefix)


@pytest.fixture
def run_up():
    runs = []

    def make(args):
        u = Up(args)
        runs.append(u)
        return u
    yield make
    for u in runs:
        u.close()


def _pod_ip(state, key):
    return state["pods"][key]["ips"][0]


def _listen(state, key, port):
    with in_netns(state["pods"][key]["netns"]):
        s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((_pod_ip(state, key), port))
    s.listen(8)
    s.settimeout(5)
    return s


def _connect(state, src, dst, port, timeout=3.0):
    with in_netns(state["pods"][src]["netns"]):
        c = socket.socket()
    c.settimeout(timeout)
    c.connect((_pod_ip(state, dst), port))
    return c


def _check_follows(up, add, remove):
    """add() brings frontend-9, remove() takes frontend-1 away; meanwhile an established
    connection frontend-0 -> backend-0 carries data before, between and after."""
    state = up.state()
    ports_before = {k: v["port"] for k, v in state["pods"].items()}
    srv = _listen(state, "shop/backend-0", 8080)
    c = _connect(state, "shop/frontend-0", "shop/backend-0", 8080)
    conn, _ = srv.accept()
    c.sendall(b"one")
    assert conn.recv(3) == b"one"
    add()
    line = up.wait_for("wired shop/frontend-9")
    state = up.state()
    assert "shop/frontend-9" in state["pods"] and os.path.exists(os.path.join(NETNS_DIR, state["pods"]["shop/frontend-9"]["netns"]))
    assert {k: state["pods"][k]["port"] for k in ports_before} == ports_before       # nobody else moved
    # the new pod is policed as a frontend: it reaches the backend on 8080
    c9 = _connect(state, "shop/frontend-9", "shop/backend-0", 8080)
    srv.accept()[0].close()
    c9.close()
    c.sendall(b"two")                                     # the old connection lives on
    assert conn.recv(3) == b"two"
    gone_netns = state["pods"]["shop/frontend-1"]["netns"]
    remove()
    line = up.wait_for("unwired ports")
    assert str(ports_before["shop/frontend-1"]) in line
    state = up.state()
    assert "shop/frontend-1" not in state["pods"] and not os.path.exists(os.path.join(NETNS_DIR, gone_netns))
    c.sendall(b"three")
    assert conn.recv(5) == b"three"
    for s in (c, conn, srv):
        s.close()


def test_sighup_wires_pods_that_came_and_unwires_pods_that_went(run_up, tmp_path):
    manifests = tmp_path / "m"
    shutil.copytree(EXAMPLES, manifests)
    up = run_up(["-f", str(manifests)])
    up.wait_for("netsem up: ready")

    def add():
        (manifests / "90-new.yaml").write_text(yaml.safe_dump(NEW_POD))
        up.proc.send_signal(signal.SIGHUP)

    def remove():
        text = (manifests / "10-pods.yaml").read_text()
        docs = [d for d in yaml.safe_load_all(text) if d and d["metadata"]["name"] != "frontend-1"]
        (manifests / "10-pods.yaml").write_text(yaml.safe_dump_all(docs))
        up.proc.send_signal(signal.SIGHUP)
    _check_follows(up, add, remove)


def test_kubeconfig_follows_the_api_server(run_up, tmp_path):
    srv = FakeApiServer()
    try:
        for f in sorted(os.listdir(EXAMPLES)):
            with open(os.path.join(EXAMPLES, f)) as fh:
                for d in yaml.safe_load_all(fh):
                    if d:
                        srv.apply(d)
        up = run_up(["--kubeconfig", srv.kubeconfig(tmp_path / "kc")])
        up.wait_for("netsem up: ready")
        # A pod the API server shows with its address, and a pod deleted, are table deltas.
        scheduled = {**NEW_POD, "status": {"phase": "Running", "podIPs": [{"ip": "198.18.0.99"}]}}
        _check_follows(up, lambda: srv.apply(scheduled), lambda: srv.delete("Pod", "shop", "frontend-1"))
        assert any("Pod shop/frontend-9 added" in x for x in up.seen)
        assert any("wired shop/frontend-9" in x and "tables as a delta" in x for x in up.seen), up.seen
        assert any("unwired ports" in x and "tables as a delta" in x for x in up.seen), up.seen
        assert _pod_ip(up.state(), "shop/frontend-9") == "198.18.0.99"
        # A label change is a table delta: frontend-0 relabeled is no frontend any
        # more (a new identity), so backend-0 refuses its new connections, while
        # one it opened before carries on; relabeled back (an identity that exists)
        # it connects again.
        state = up.state()
        lsn = _listen(state, "shop/backend-0", 8080)
        old = _connect(state, "shop/frontend-0", "shop/backend-0", 8080)
        peer, _ = lsn.accept()
        fe0 = srv.objects["/api/v1/pods"][("shop", "frontend-0")]
        srv.apply({**fe0, "metadata": {**fe0["metadata"], "labels": {"app": "intruder", "tier": "web"}}})
        assert "tables as a delta" in up.wait_for("netsem up: applied")
        with pytest.raises(OSError):
            _connect(state, "shop/frontend-0", "shop/backend-0", 8080, timeout=1.0)
        old.sendall(b"still")
        assert peer.recv(5) == b"still"
        srv.apply(fe0)
        assert "tables as a delta" in up.wait_for("netsem up: applied")
        _connect(state, "shop/frontend-0", "shop/backend-0", 8080).close()
        for x in (old, peer, lsn):
            x.close()
        # a bad object is said and changes nothing
        srv.apply({**NEW_POD, "metadata": {**NEW_POD["metadata"], "name": "Bad"}})
        up.wait_for("Pod shop/Bad added: rejected, nothing changed")
    finally:
        srv.close()
