"""Fixtures for the soft-switch tests: real namespaces, real sockets, run as root.

Each test gets its own run prefix and tears its namespaces down in a finalizer even
when it fails; the switch runs in a thread of the test process (ns_switch_run
releases the GIL), so nothing outlives the test."""
import os
import secrets
import socket
import threading
import time

import pytest

from tests.conftest import cluster_from

if os.geteuid() != 0:
    pytest.skip("soft-switch tests create network namespaces: run as root", allow_module_level=True)

from pipeline.dataplane.compiler import compile_cluster          # noqa: E402
from pipeline.switch.switch import Switch, topology_pods       # noqa: E402
from pipeline.switch.netns import down, in_netns  # noqa: E402
from pipeline.switch.topology import Topology  # noqa: E402

TWO_PODS = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: t, labels: {team: t}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: t, labels: {app: a}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
    status: {podIPs: [{ip: 198.18.0.10}, {ip: "2001:db8::10"}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: b, namespace: t, labels: {app: b}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
    status: {podIPs: [{ip: 198.18.0.11}, {ip: "2001:db8::11"}]}
    """


class Run:
    """A running switch over a topology built from manifests."""

    def __init__(self, text: str, port_type: str = "veth", pcap: str = None, offloads: bool = True,
                 busy_poll_us: int = 0, workers: int = 1, coalesce_us: int = 0):
        self.cluster = cluster_from(text)
        self.compiled = compile_cluster(self.cluster)
        self.prefix = "nsm" + secrets.token_hex(3)
        self.topo = Topology.build(topology_pods(self.compiled), prefix=self.prefix, port_type=port_type,
                                   offloads=offloads)
        self.stop = threading.Event()
        self.thread = None
        self.sw = None
        self.rec = None
        try:
            self.sw = Switch(self.compiled, self.topo, busy_poll_us=busy_poll_us, workers=workers,
                             coalesce_us=coalesce_us)
            if pcap:
                from pipeline.switch.capture import Recorder
                self.rec = Recorder(self.sw, pcap)
            self.thread = threading.Thread(target=self.sw.serve, args=(self.stop,),
                                           kwargs={"on_slice": self.rec.drain if self.rec else None},
                                           daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def netns(self, key: str) -> str:
        return self.topo.by_key(key).netns

    def ip(self, key: str, family: int = 4) -> str:
        return str(next(i for i in self.topo.by_key(key).ips if i.version == family))

    def sock(self, key: str, family: int, stype: int, proto: int = 0) -> socket.socket:
        with in_netns(self.netns(key)):
            return socket.socket(family, stype, proto)

    def listen_tcp(self, key: str, port: int, family: int = 4) -> socket.socket:
        s = self.sock(key, socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.ip(key, family), port))
        s.listen(16)
        s.settimeout(2)
        return s

    def connect_tcp(self, src: str, dst: str, port: int, family: int = 4, timeout: float = 1.0):
        """-> connected socket, or None when the connection timed out."""
        s = self.sock(src, socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((self.ip(dst, family), port))
            return s
        except (socket.timeout, OSError):
            s.close()
            return None

    def reload(self, text: str) -> None:
        compiled = compile_cluster(cluster_from(text))
        assert self.sw.request_install(compiled).wait(5)

    def counter(self, reason: str) -> int:
        self.sync()
        return self.sw.stats().reasons[reason]

    def sync(self) -> None:
        """Lets the switch thread finish what is in flight (one loop slice is 50 ms)."""
        time.sleep(0.15)

    def close(self) -> None:
        try:
            self.stop.set()
            if self.thread is not None:
                self.thread.join(5)
            if self.rec is not None:
                self.rec.close()
            if self.sw is not None:
                self.sw.close()
        finally:
            self.topo.teardown()


@pytest.fixture
def switch_run():
    runs = []

    def make(text: str = TWO_PODS, port_type: str = "veth", pcap: str = None, **kw) -> Run:
        r = Run(text, port_type, pcap, **kw)
        runs.append(r)
        return r
    try:
        yield make
    finally:
        for r in runs:
            try:
                r.close()
            finally:
                down(r.prefix)
