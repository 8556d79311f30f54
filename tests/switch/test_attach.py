"""Restarts that keep connections, and hygiene (issue 13): after SIGKILL of `netsem up`,
`netsem up --attach PREFIX` takes the same namespaces over and established connections
carry on (the connection table lives in /dev/shm and is mapped again); Ctrl-C,
SIGTERM or SIGKILL at random points of a run's life leave nothing behind once the run
is stopped or `netsem down` has run."""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute

from pipeline.switch.netns import NETNS_DIR, SHM_DIR, STATE_DIR, down, wait_ready

from .flood import C, D, PODS, ROOT

NETSEM = [sys.executable, "-m", "pipeline.cli"]


def leftovers(prefix: str) -> list[str]:
    """Everything of run `prefix` that exists: namespaces, links, files, processes."""
    out = [f"netns {n}" for n in os.listdir(NETNS_DIR) if n.startswith(prefix)] \
        if os.path.isdir(NETNS_DIR) else []
    with IPRoute() as ipr:
        out += [f"link {name}" for link in ipr.get_links()
                if (name := link.get_attr("IFLA_IFNAME") or "").startswith(prefix)]
    out += [f"file {p}" for p in (os.path.join(STATE_DIR, f"{prefix}.json"), os.path.join(SHM_DIR, f"{prefix}.ct"))
            if os.path.exists(p)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if prefix.encode() in f.read():
                    out.append(f"process {pid}")
        except OSError:
            pass
    return out


class Runs:
    """`netsem up` processes of one prefix; all stopped and the run removed at the end."""

    def __init__(self, tmp_path):
        self.prefix = "nsm" + os.urandom(2).hex()
        self.path = str(tmp_path / "pods.yaml")
        with open(self.path, "w") as f:
            f.write(PODS)
        self.procs = []

    def start(self, *flags: str) -> subprocess.Popen:
        self.log = self.path + f".{len(self.procs)}.log"     # a file: a pipe nobody reads fills
        p = subprocess.Popen(NETSEM + ["up", "-f", self.path, "--cluster-dns", "none", *flags],
                             stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), cwd=ROOT)
        self.procs.append(p)
        return p

    def up(self) -> subprocess.Popen:
        p = self.start("--prefix", self.prefix)
        wait_ready(self.prefix, 60)
        return p

    def attach(self) -> subprocess.Popen:
        p = self.start("--attach", self.prefix)
        wait_ready(self.prefix, 60)
        return p

    def netns(self, pod: str) -> str:
        return f"{self.prefix}-p{'abcd'.index(pod) + 1}"

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        down(self.prefix)


@pytest.fixture
def runs(tmp_path):
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        r.close()


def sock(runs, pod, kind):
    from pipeline.switch.netns import in_netns
    with in_netns(runs.netns(pod)):
        return socket.socket(socket.AF_INET, kind)


def test_attach_after_sigkill_keeps_established_connections(runs):
    first = runs.up()
    srv = sock(runs, "d", socket.SOCK_STREAM)
    srv.bind((D, 7001))
    srv.listen(1)
    cl = sock(runs, "c", socket.SOCK_STREAM)
    cl.settimeout(10)
    cl.connect((D, 7001))
    conn, _ = srv.accept()
    conn.settimeout(30)
    u_c, u_d = sock(runs, "c", socket.SOCK_DGRAM), sock(runs, "d", socket.SOCK_DGRAM)
    u_d.bind((D, 7002))
    u_c.settimeout(5)
    u_d.settimeout(5)
    u_c.sendto(b"u1", (D, 7002))
    assert u_d.recvfrom(16)[0] == b"u1"
    cl.sendall(b"before")
    assert conn.recv(16) == b"before"

    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    assert any(x.startswith("netns") for x in leftovers(runs.prefix))     # the run is still there
    cl.sendall(b"during")                    # lost on the dead switch's port; TCP retransmits it
    second = runs.attach()
    ready = time.monotonic()
    assert conn.recv(16) == b"during"
    resumed = time.monotonic()
    cl.sendall(b"after")
    assert conn.recv(16) == b"after"
    conn.sendall(b"back")
    assert cl.recv(16) == b"back"
    # the UDP flow's entry was taken over too: d answers c as a reply
    u_d.sendto(b"u2", (C, u_c.getsockname()[1]))
    assert u_c.recvfrom(16)[0] == b"u2"
    print(f"attach ready {ready - killed:.2f} s after the kill; the TCP stream resumed after "
          f"{resumed - killed:.2f} s")
    for s in (cl, conn, srv, u_c, u_d):
        s.close()
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert leftovers(runs.prefix) == []


def test_attach_refuses_a_live_run_and_a_missing_one(runs):
    runs.up()
    r = subprocess.run(NETSEM + ["up", "-f", runs.path, "--attach", runs.prefix], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "still served" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(NETSEM + ["up", "-f", runs.path, "--attach", "nsmffff"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "no netsem run" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(NETSEM + ["up", "-f", runs.path, "--attach", runs.prefix, "--port-type", "tap"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("seed", range(6))
def test_a_run_killed_at_a_random_point_leaves_nothing_once_stopped(runs, seed):
    """Ctrl-C or SIGTERM: `up` removes everything itself. SIGKILL: the run stays for
    --attach, and `netsem down` removes everything."""
    rnd = random.Random(seed)
    sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[seed % 3]
    p = runs.start("--prefix", runs.prefix)
    time.sleep(rnd.uniform(0.0, 3.0))        # import, compile, wiring, ready: anywhere
    p.send_signal(sig)
    p.wait(60)
    if sig == signal.SIGKILL:
        r = subprocess.run(NETSEM + ["down", "--prefix", runs.prefix], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
    else:
        with open(runs.log) as f:
            assert "Traceback" not in f.read()
    assert leftovers(runs.prefix) == []


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_run_taken_down_under_its_switch_leaves_it_idle_not_spinning(runs):
    # The devices vanish under the live switch: their sockets report an error that
    # poll() repeats until it is read (native/switch.c clear_port_errors).
    p = runs.up()
    r = subprocess.run(NETSEM + ["down", "--prefix", runs.prefix], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    time.sleep(1.0)
    c0 = cpu_seconds(p.pid)
    time.sleep(3.0)
    used = cpu_seconds(p.pid) - c0
    assert p.poll() is None and used < 0.5, f"{used:.2f} s of CPU in 3 s"
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0
    assert leftovers(runs.prefix) == []
