"""What tests/test_leaks.py runs under valgrind: the C pipeline's whole life through
the Python driver, as the switch lives it, three times over: tables compiled and
swapped (with rechecks), packets, events, the per-port limit, the connection table
in a shared file, attached to by a second pipeline, everything freed."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scapy.all import IP, TCP, raw  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402
from pipeline.dataplane.driver import Datapath  # noqa: E402
from tests.conftest import cluster_from  # noqa: E402
from tests.test_regressions import PODS, DENY_INGRESS, A, B, PA  # noqa: E402
from tests.packets import ether  # noqa: E402
SEC = 10**9
c1, c2 = cluster_from(PODS), cluster_from(PODS + DENY_INGRESS)
frames = [raw(ether() / IP(src=A, dst=B) / TCP(sport=1000 + i, dport=80, flags="S")) for i in range(50)]
for _ in range(3):
    with tempfile.TemporaryDirectory() as d:
        dp = Datapath(connections=256, events=64, per_port=8, ct_file=os.path.join(d, "t.ct"))
        for g in range(4):
            dp.install(compile_cluster(c1 if g % 2 else c2), recheck=True)
            dp.run_batch(frames[:40], [PA] * 40, SEC * (g + 1))
            list(dp.events())
        dp2 = Datapath(ct_file=os.path.join(d, "t.ct"), attach=True)
        dp2.install(compile_cluster(c1))
        dp2.close()
        dp.close()
print("ok")
