"""A SYN flood through `netsem up`, measured: the machinery of tests/switch/test_flood.py
and bench/flood_bench.py.

Four pods: `a` floods `b` (a closed port: b's kernel answers each SYN with a reset, as a
real victim does) with bench/gen/udpgen.c in SYN mode, a new connection per frame at the
generator's full rate; `c` and `d` hold an established UDP flow, sequence-numbered, so a
lost packet is counted, not guessed; `c` also opens new TCP connections to `d` during
the flood. The switch's memory (VmRSS of `netsem up`) is read at the flood's start and
end, and its drop counters from its metrics page."""

import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from pyroute2 import NetNS

from pipeline.switch.netns import down, in_netns, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETSEM = [sys.executable, "-m", "pipeline.cli"]
A, B, C, D = "198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"
FLOW_PORT, LISTEN_PORT, CLOSED_PORT = 7000, 7001, 9
SO_RCVBUFFORCE = 33          # Linux; the socket module does not name it

PODS = "\n---\n".join(
    ["apiVersion: v1\nkind: Namespace\nmetadata: {name: t}"] +
    [f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, namespace: t, labels: {{app: {n}}}}}\n"
     f"spec: {{containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}}}"
     for n, ip in zip("abcd", (A, B, C, D))])


def build_generator(directory: str) -> str:
    out = os.path.join(directory, "udpgen")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", out, os.path.join(ROOT, "bench", "gen", "udpgen.c")],
                   check=True)
    return out


def _cpus():
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[-1]


class Up:
    """`netsem up` over the four pods, as a user starts it; close() stops it and removes
    everything it made, whatever happened."""

    def __init__(self, tmp: str, *flags: str, manifests: str = None, kubeconfig: str = None):
        self.prefix = "nsm" + secrets.token_hex(2)
        self.metrics_port = _free_port()
        path = manifests or os.path.join(tmp, f"{self.prefix}.yaml")
        if manifests is None and kubeconfig is None:
            with open(path, "w") as f:
                f.write(PODS)
        source = ["--kubeconfig", kubeconfig] if kubeconfig else ["-f", path]
        self.proc = subprocess.Popen(
            NETSEM + ["up", *source, "--prefix", self.prefix, "--cluster-dns", "none",
                      "--metrics-port", str(self.metrics_port), "--stats-interval", "0.2", *flags],
            # a file, not a pipe nobody reads: a full pipe would block `up` mid-run
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{self.prefix}.log"), "w"), cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, {_cpus()[1]}))
        try:
            self.state = wait_ready(self.prefix, 60)
        except BaseException:
            self.close()
            raise

    def netns(self, pod: str) -> str:
        return self.state["pods"][f"t/{pod}"]["netns"]

    def macs(self, pod: str) -> tuple[str, str]:
        """The pod's eth0 MAC and its gateway's (the switch port it sees)."""
        with NetNS(self.netns(pod)) as ns:
            mine = ns.get_links(ns.link_lookup(ifname="eth0")[0])[0].get_attr("IFLA_ADDRESS")
        with NetNS(self.state["switch_netns"]) as ns:
            sw = self.state["pods"][f"t/{pod}"]["switch_ifname"]
            gw = ns.get_links(ns.link_lookup(ifname=sw)[0])[0].get_attr("IFLA_ADDRESS")
        return mine, gw

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def metrics(self) -> dict:
        """{(metric, label values...): value} from the metrics page, once it has a sample."""
        out: dict = {}
        deadline = time.monotonic() + 10
        while not out and time.monotonic() < deadline:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
            for fam in text_string_to_metric_families(text.decode()):
                for s in fam.samples:
                    out[(s.name,) + tuple(s.labels.values())] = s.value
            time.sleep(0.2)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        down(self.prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sock(up: Up, pod: str, kind=socket.SOCK_DGRAM) -> socket.socket:
    with in_netns(up.netns(pod)):
        return socket.socket(socket.AF_INET, kind)


class Stream:
    """c -> d, `rate` sequence-numbered datagrams a second until stop(); established
    first (d answers c once, so conntrack holds it as replied)."""

    def __init__(self, up: Up, rate: int = 5000):
        self.tx, self.rx = _sock(up, "c"), _sock(up, "d")
        # Room for seconds of the stream, so that a receiving thread the flood keeps
        # off the CPU loses nothing in d's own socket: what is lost is the switch's.
        self.rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        self.rx.bind((D, FLOW_PORT))
        self.rx.settimeout(2)
        self.tx.bind((C, FLOW_PORT))
        self.tx.settimeout(2)
        self.tx.sendto(b"hello", (D, FLOW_PORT))
        _, peer = self.rx.recvfrom(64)
        self.rx.sendto(b"hello", peer)
        self.tx.recvfrom(64)
        self.rate, self.sent, self.seen = rate, 0, set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._recv, daemon=True)]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        t0, burst = time.monotonic(), 10
        while not self._stop.is_set():
            for _ in range(burst):
                self.tx.sendto(struct.pack("!Q", self.sent), (D, FLOW_PORT))
                self.sent += 1
            lag = t0 + self.sent / self.rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)

    def _recv(self) -> None:
        self.rx.settimeout(0.5)
        while True:
            try:
                data = self.rx.recv(64)
            except socket.timeout:
                if self._stop.is_set():
                    return
                continue
            if len(data) == 8:
                self.seen.add(struct.unpack("!Q", data)[0])

    def stop(self) -> int:
        """Stops sending; returns the packets lost (sent and never received)."""
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.tx.close()
        self.rx.close()
        return self.sent - len(self.seen)


def connect(up: Up, src: str, dst_ip: str, timeout: float = 1.0) -> bool:
    s = _sock(up, src, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((dst_ip, LISTEN_PORT))
        return True
    except OSError:
        return False
    finally:
        s.close()


def flood(up: Up, gen: str, seconds: float, during=None) -> dict:
    """SYN flood a -> b for `seconds` while c -> d streams; `during()` runs meanwhile.
    Returns the figures."""
    mine, gw = up.macs("a")
    srv = listen(up)
    stream = Stream(up)
    try:
        up.metrics()
        rss0 = up.rss_kib()
        gen_cpu = _cpus()[0]
        fd = os.open(f"/run/netns/{up.netns('a')}", os.O_RDONLY)

        def enter():
            from pyroute2 import netns as pr_netns
            pr_netns.setns(fd, flags=0)
            os.sched_setaffinity(0, {gen_cpu})
        t0 = time.monotonic()
        proc = subprocess.Popen([gen, "eth0", mine, gw, A, B, "0", str(seconds), "syn"],
                                stdout=subprocess.PIPE, text=True, preexec_fn=enter, pass_fds=(fd,))
        extra = during() if during else None
        out, _ = proc.communicate(timeout=seconds + 30)
        os.close(fd)
        elapsed = time.monotonic() - t0
        rss1 = up.rss_kib()
        time.sleep(0.3)
    finally:
        lost = stream.stop()
        unlisten(srv)
    m = up.metrics()
    sent = int(out.split()[1])
    return {"sent": sent, "seconds": seconds, "rate": sent / seconds, "elapsed": elapsed,
            "stream_sent": stream.sent, "stream_lost": lost, "rss_start_kib": rss0, "rss_end_kib": rss1,
            "conntrack_full": m.get(("netsem_drops_total", "conntrack_full"), 0),
            "conntrack_pod_limit": m.get(("netsem_drops_total", "conntrack_pod_limit"), 0),
            "new": m.get(("netsem_packets_total", "new", "forward"), 0),
            "port_drops": sum(v for k, v in m.items() if k[0] == "netsem_port_drops_total"),
            "during": extra}


def listen(up: Up) -> socket.socket:
    """A TCP listener on d that accepts and closes every connection, until closed
    (shut down first: that is what wakes a thread blocked in accept)."""
    srv = _sock(up, "d", socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((D, LISTEN_PORT))
    srv.listen(256)

    def accept_all():
        while True:
            try:
                c, _ = srv.accept()
                c.close()
            except OSError:
                return
    threading.Thread(target=accept_all, daemon=True).start()
    return srv


def unlisten(srv: socket.socket) -> None:
    try:
        srv.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    srv.close()


def recovery_seconds(up: Up, src: str = "c", limit: float = 40.0) -> float:
    """Seconds until `src` opens a new connection to d again."""
    srv = listen(up)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < limit:
            if connect(up, src, D, timeout=0.5):
                return time.monotonic() - t0
        return float("inf")
    finally:
        unlisten(srv)
