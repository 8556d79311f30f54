"""Tables swapped under load (issue 13, "Policy churn"): the machinery of
tests/switch/test_churn.py and bench/churn_bench.py.

`netsem up --pcap` over four pods while a TCP stream (c -> d, both ways), a
sequence-numbered UDP stream (c -> d) and, every 50 ms, a new TCP connection b -> d
run; every `period` seconds the policy file is rewritten (five policy sets in turn:
none, d isolated, d open to a only, b egress-isolated, b -> d allowed on one port) and
SIGHUP sent. Afterwards: bytes and datagrams lost, the generations the switch went
through, and the offline check of the recording: every inbound frame replayed under
the table generation that judged it, against the switch's verdict and the oracle."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import yaml

from .flood import D, LISTEN_PORT, PODS, ROOT, Stream, Up, _sock, listen, unlisten

POLICY_SETS = [
    "",
    """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: d-isolated, namespace: t}
spec: {podSelector: {matchLabels: {app: d}}, policyTypes: [Ingress]}""",
    """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: d-from-a, namespace: t}
spec:
  podSelector: {matchLabels: {app: d}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]""",
    """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-no-egress, namespace: t}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Egress]}""",
    """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-to-d, namespace: t}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: d}}}], ports: [{port: 7001}]}]""",
]
STREAM_PORT = 7003


class TcpStream:
    """c -> d, 4 KiB every 5 ms, and d answers each chunk with 16 bytes: both ways busy."""

    def __init__(self, up: Up):
        self.srv = _sock(up, "d", socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((D, STREAM_PORT))
        self.srv.listen(1)
        self.cl = _sock(up, "c", socket.SOCK_STREAM)
        self.cl.settimeout(10)
        self.cl.connect((D, STREAM_PORT))
        self.peer, _ = self.srv.accept()
        self.peer.settimeout(10)
        self.sent = self.received = self.answered = 0
        self.error = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._serve, self._read)]
        for t in self._threads:
            t.start()

    def _send(self):
        try:
            while not self._stop.is_set():
                self.cl.sendall(b"x" * 4096)
                self.sent += 4096
                time.sleep(0.005)
        except OSError as e:
            self.error = f"send: {e}"

    def _serve(self):
        try:
            while self.received < self.sent or not self._stop.is_set():
                data = self.peer.recv(65536)
                if not data:
                    return
                self.received += len(data)
                self.peer.sendall(b"y" * 16)
        except OSError as e:
            self.error = f"receive: {e}"

    def _read(self):
        try:
            while self.answered < 16 or not self._stop.is_set():
                data = self.cl.recv(65536)
                if not data:
                    return
                self.answered += len(data)
        except OSError as e:
            if not self._stop.is_set():
                self.error = f"answers: {e}"

    def stop(self) -> dict:
        self._stop.set()
        self._threads[0].join(10)
        deadline = time.monotonic() + 10
        while self.received < self.sent and time.monotonic() < deadline and self.error is None:
            time.sleep(0.05)
        out = {"tcp_sent": self.sent, "tcp_lost": self.sent - self.received, "tcp_error": self.error}
        for s in (self.cl, self.peer, self.srv):
            s.close()
        return out


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)      # a reload never reads half a file


class FileChanges:
    """The policy file rewritten, then SIGHUP."""

    def __init__(self, tmp: str, rec: str):
        manifests = os.path.join(tmp, "manifests")
        os.makedirs(manifests, exist_ok=True)
        _write(os.path.join(manifests, "pods.yaml"), PODS)
        self.policy = os.path.join(manifests, "policy.yaml")
        _write(self.policy, POLICY_SETS[0])
        self.up = Up(tmp, "--pcap", rec, manifests=manifests)

    def change(self, i: int) -> None:
        _write(self.policy, POLICY_SETS[i % len(POLICY_SETS)])
        self.up.proc.send_signal(signal.SIGHUP)

    def close(self) -> None:
        self.up.close()


class ApiChanges:
    """The API server (the test's, tests/kube_api.py): the previous set's policy
    deleted and the next one created, which `netsem up --kubeconfig` watches."""

    def __init__(self, tmp: str, rec: str):
        from ..kube_api import FakeApiServer
        self.api = FakeApiServer()
        for doc in yaml.safe_load_all(PODS):
            self.api.apply(doc)
        self.current = None
        try:
            self.up = Up(tmp, "--pcap", rec, kubeconfig=self.api.kubeconfig(os.path.join(tmp, "kubeconfig")))
        except BaseException:
            self.api.close()
            raise

    def change(self, i: int) -> None:
        if self.current is not None:
            self.api.delete("NetworkPolicy", "t", self.current)
            self.current = None
        text = POLICY_SETS[i % len(POLICY_SETS)]
        if text:
            obj = yaml.safe_load(text)
            self.api.apply(obj)
            self.current = obj["metadata"]["name"]

    def close(self) -> None:
        try:
            self.up.close()
        finally:
            self.api.close()


def run_churn(tmp: str, seconds: float, period: float = 0.1, via: str = "files") -> dict:
    rec = os.path.join(tmp, "rec")
    changes = (FileChanges if via == "files" else ApiChanges)(tmp, rec)
    up = changes.up
    try:
        srv = listen(up)                 # d accepts (and closes) b's new connections
        tcp, udp = TcpStream(up), Stream(up, rate=2000)
        stop = threading.Event()
        tries = {"opened": 0, "refused": 0}
        t = threading.Thread(target=_open_new, args=(up, stop, tries), daemon=True)
        t.start()
        sighups, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            sighups += 1
            changes.change(sighups)
            time.sleep(max(0.0, t0 + sighups * period - time.monotonic()))
        stop.set()
        t.join(10)
        out = tcp.stop()
        out["udp_sent"], out["udp_lost"] = udp.sent, udp.stop()
        out.update(tries)
        unlisten(srv)
    finally:
        changes.close()
    out["changes"] = sighups
    with open(os.path.join(rec, "generations.json")) as f:
        out["generations"] = len(json.load(f)["generations"])
    t1 = time.monotonic()
    check = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "--generations", rec, "--pcap",
                            os.path.join(rec, "in.pcapng"), "--check", "-q"],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
    out["check_exit"], out["check_said"] = check.returncode, check.stderr.strip().splitlines()[-3:]
    out["check_s"] = time.monotonic() - t1
    return out


def _open_new(up: Up, stop: threading.Event, tries: dict) -> None:
    """b -> d, a new connection every 50 ms: allowed or refused by the generation in force."""
    while not stop.is_set():
        s = _sock(up, "b", socket.SOCK_STREAM)
        s.settimeout(0.2)
        try:
            s.connect((D, LISTEN_PORT))
            tries["opened"] += 1
        except OSError:
            tries["refused"] += 1
        finally:
            s.close()
        time.sleep(0.05)

