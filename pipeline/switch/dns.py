"""The cluster DNS server `netsem up` runs in the DNS pods (model/dns.py says which
names it answers for and what the records are). It answers A and AAAA queries, over
UDP and TCP, from a records file that `netsem up` rewrites on every reload (re-read
when it changes); names of the cluster domain it has no record of are NXDOMAIN, other
names NXDOMAIN too, not authoritatively: there is no upstream to forward to, and
nothing exists outside the cluster's names. dnspython parses and builds the
messages.

Run as `python -m pipeline.switch.dns RECORDS.json` inside the pod's namespace."""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..model.dns import CLUSTER_DOMAIN, TTL


class Answers:
    """The records file, re-read when its modification time changes."""

    def __init__(self, path: str):
        self.path = path
        self.mtime = None
        self.records: dict = {}

    def refresh(self) -> None:
        try:
            m = os.stat(self.path).st_mtime_ns
        except OSError:
            return
        if m != self.mtime:
            with open(self.path) as f:
                self.records = json.load(f)
            self.mtime = m

    def answer(self, wire: bytes) -> bytes | None:
        try:
            q = dns.message.from_wire(wire)
        except Exception:
            return None                      # not a DNS query: no answer, as servers do
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if q.opcode() != 0 or len(q.question) != 1:
            r.set_rcode(dns.rcode.NOTIMP)
            return r.to_wire()
        self.refresh()
        question = q.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rec = self.records.get(name)
        if rec is None:
            inside = name == CLUSTER_DOMAIN or name.endswith("." + CLUSTER_DOMAIN)
            r.set_rcode(dns.rcode.NXDOMAIN)
            if not inside:
                r.flags &= ~dns.flags.AA
            return r.to_wire()
        kind = {dns.rdatatype.A: "a", dns.rdatatype.AAAA: "aaaa"}.get(question.rdtype)
        if kind and rec.get(kind) and question.rdclass == dns.rdataclass.IN:
            r.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN",
                                                     dns.rdatatype.to_text(question.rdtype), rec[kind]))
        return r.to_wire()            # a name without records of the type: NOERROR, no data


def serve(path: str) -> None:
    answers = Answers(path)
    sel = selectors.DefaultSelector()
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            u = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            u.bind((host, 53))
            t = socket.socket(family, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            t.bind((host, 53))
            t.listen(16)
        except OSError:
            if family == socket.AF_INET:
                raise
            continue                          # no IPv6 in the pod: IPv4 only
        sel.register(u, selectors.EVENT_READ, "udp")
        sel.register(t, selectors.EVENT_READ, "tcp")
    print("netsem dns: serving", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "udp":
                wire, peer = s.recvfrom(65535)
                out = answers.answer(wire)
                if out is not None:
                    s.sendto(out, peer)
            else:
                c, _ = s.accept()
                with c:
                    _serve_tcp(c, answers)


def _serve_tcp(c: socket.socket, answers: Answers) -> None:
    """One query per connection, length-prefixed (RFC 1035 4.2.2); a slow client gets
    a second, then is dropped: the loop serves everyone."""
    c.settimeout(1.0)
    try:
        head = _read(c, 2)
        out = answers.answer(_read(c, struct.unpack("!H", head)[0]))
        if out is not None:
            c.sendall(struct.pack("!H", len(out)) + out)
    except (OSError, ValueError):
        pass


def _read(c: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise ValueError("short read")
        buf += chunk
    return buf


# -- what `netsem up` does with it ---------------------------------------------------------
class ClusterDNS:
    """`netsem up`'s side: the records file, one resolv.conf per namespace (what
    `netsem exec` mounts over /etc/resolv.conf), and a server in each DNS pod, killed
    with the run (and by the kernel if netsem up dies: PR_SET_PDEATHSIG)."""

    def __init__(self, state_dir: str, prefix: str, address: str):
        self.dir = os.path.join(state_dir, f"{prefix}.dns")
        self.address = address
        self.procs: list = []
        os.makedirs(self.dir, exist_ok=True)

    @property
    def records_path(self) -> str:
        return os.path.join(self.dir, "records.json")

    def resolv_path(self, namespace: str) -> str:
        return os.path.join(self.dir, f"resolv.{namespace}.conf")

    def write(self, cluster) -> None:
        """Records and resolv.conf files for `cluster`, each replaced atomically."""
        from ..model.dns import dns_records, resolv_conf
        recs = {name: {"a": r.a, "aaaa": r.aaaa} for name, r in dns_records(cluster).items()}
        _write(self.records_path, json.dumps(recs, indent=1, sort_keys=True))
        for ns in cluster.namespaces:
            _write(self.resolv_path(ns), resolv_conf(ns, self.address))

    def start(self, netns_paths: list, wait: float = 10.0) -> None:
        """A server in each namespace; returns once each says it serves."""
        import subprocess
        import time
        for path in netns_paths:
            p = subprocess.Popen([sys.executable, "-m", "pipeline.switch.dns", self.records_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=_enter(path), cwd=os.path.dirname(os.path.dirname(
                                     os.path.dirname(os.path.abspath(__file__)))))
            self.procs.append(p)
        deadline = time.monotonic() + wait
        for p in self.procs:
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            if not sel.select(max(0.0, deadline - time.monotonic())) or "serving" not in p.stdout.readline():
                raise RuntimeError(f"the cluster DNS server did not start: {p.poll()} "
                                   f"{p.stderr.read() if p.poll() is not None else ''}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _enter(netns_path: str):
    def child():
        import ctypes
        from pyroute2 import netns as pr_netns
        ctypes.CDLL(None).prctl(1, 9)        # PR_SET_PDEATHSIG, SIGKILL
        fd = os.open(netns_path, os.O_RDONLY)
        pr_netns.setns(fd, flags=0)
        os.close(fd)
    return child


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline.switch.dns RECORDS.json", file=sys.stderr)
        return 2
    try:
        serve(argv[0])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
