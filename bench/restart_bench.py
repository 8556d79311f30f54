"""Restarts that keep connections (issue 13): `netsem up` with N established TCP
connections (c -> d) and N UDP flows (c -> d, answered once), then SIGKILL, then
`netsem up --attach`: how long the run had no switch (the kill to "ready" of the new
process), how long until every TCP connection had carried a byte again, and how many
of the connections were kept. The same run without the shared table (the new process
starting with an empty one) is the baseline: what a restart costs without it.

    python3 bench/restart_bench.py [--connections 500] [-o json]

Run as root."""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.switch.netns import down, in_netns, wait_ready  # noqa: E402
from tests.switch.flood import D, PODS, ROOT  # noqa: E402

NETSEM = [sys.executable, "-m", "pipeline.cli"]
# c takes no connection in: d reaches it only with replies, so a datagram from d
# arrives only if c's flow was kept (else it is a new connection, and denied).
C_ISOLATED = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-no-ingress, namespace: t}
spec: {podSelector: {matchLabels: {app: c}}, policyTypes: [Ingress]}
"""


def sock(prefix, pod, kind):
    with in_netns(f"{prefix}-p{'abcd'.index(pod) + 1}"):
        return socket.socket(socket.AF_INET, kind)


def run(tmp: str, n: int, keep: bool) -> dict:
    prefix = "nsm" + os.urandom(2).hex()
    path = os.path.join(tmp, "pods.yaml")
    with open(path, "w") as f:
        f.write(PODS + C_ISOLATED)
    base = NETSEM + ["up", "-f", path, "--cluster-dns", "none"]
    procs = [subprocess.Popen(base + ["--prefix", prefix], stderr=subprocess.DEVNULL, cwd=ROOT)]
    try:
        wait_ready(prefix, 60)
        srv = sock(prefix, "d", socket.SOCK_STREAM)
        srv.bind((D, 7001))
        srv.listen(n)
        pairs = []
        for _ in range(n):
            cl = sock(prefix, "c", socket.SOCK_STREAM)
            cl.settimeout(10)
            cl.connect((D, 7001))
            peer, _ = srv.accept()
            peer.settimeout(0.2)
            pairs.append((cl, peer))
        u_d = sock(prefix, "d", socket.SOCK_DGRAM)
        u_d.bind((D, 7002))
        u_d.settimeout(2)
        flows = []
        for _ in range(n):
            u = sock(prefix, "c", socket.SOCK_DGRAM)
            u.settimeout(0.2)
            u.sendto(b"o", (D, 7002))
            _, addr = u_d.recvfrom(8)
            u_d.sendto(b"o", addr)
            u.recvfrom(8)
            flows.append((u, addr))
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        killed = time.monotonic()
        if not keep:                                   # the baseline: every entry freed
            ct = f"/dev/shm/{prefix}.ct"
            size = os.path.getsize(ct)
            with open(ct, "r+b") as f:
                f.seek(4096)
                f.write(bytes(size - 4096))
        for cl, _ in pairs:
            cl.sendall(b"x")                           # into the dead switch: TCP retransmits
        procs.append(subprocess.Popen(base + ["--attach", prefix],
                                      stderr=open(os.path.join(tmp, "attach.log"), "w"), cwd=ROOT))
        try:
            wait_ready(prefix, 60)
        except LookupError:
            with open(os.path.join(tmp, "attach.log")) as f:
                return {"keep": keep, "connections": n, "attach_failed": f.read().strip()[-300:]}
        ready = time.monotonic() - killed
        tcp_kept, last = 0, 0.0
        deadline = time.monotonic() + 20
        for cl, peer in pairs:
            while time.monotonic() < deadline:
                try:
                    if peer.recv(8):
                        tcp_kept += 1
                        last = time.monotonic() - killed
                    break
                except socket.timeout:
                    continue
                except OSError:
                    break
        udp_kept = 0
        for u, addr in flows:
            u_d.sendto(b"r", addr)                     # d answers: a reply only if the entry was kept
            try:
                udp_kept += u.recvfrom(8)[0] == b"r"
            except OSError:
                pass
        return {"keep": keep, "connections": n, "gap_s": round(ready, 2),
                "tcp_resumed_s": round(last, 2), "tcp_kept": tcp_kept, "udp_kept": udp_kept}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        down(prefix)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=500, help="TCP connections and UDP flows (default 500)")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("restart_bench: run as root (it builds namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="netsem-restart-") as tmp:
        rows = [run(tmp, args.connections, keep) for keep in (True, False)]
    if args.output == "json":
        print(json.dumps(rows, indent=1))
        return 0
    print("| restart after SIGKILL | gap (kill -> ready) | TCP kept | TCP all resumed after | UDP kept |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        label = "`up --attach` (shared table)" if r["keep"] else "baseline: same, table emptied"
        if "attach_failed" in r:
            print(f"| {label} | attach failed: {r['attach_failed']} | | | |")
            continue
        print(f"| {label} | {r['gap_s']} s | {r['tcp_kept']} of {r['connections']} | "
              f"{r['tcp_resumed_s'] if r['tcp_kept'] else '-'} s | {r['udp_kept']} of {r['connections']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
