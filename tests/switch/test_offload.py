"""GSO pass-through on real packets (issue 12): pods keep their default offloads, the
switch receives 64 KB super-frames with partial checksums, judges each once, sends it
on whole, and translates it through a Service; with offloads off it still carries the
same traffic in MTU-sized frames. A recording of super-frames replays to the same
verdicts in the fast path and the oracle."""

import hashlib
import os
import socket
import threading

import pytest

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.pcap import read_capture
from pipeline.dataplane.replay import replay

SVC = """
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: t, labels: {app: a}}
spec: {containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 198.18.0.10}, {ip: "2001:db8::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: t, labels: {app: b}}
spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}]}]}
status: {podIPs: [{ip: 198.18.0.11}, {ip: "2001:db8::11"}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: t}
spec:
  selector: {app: b}
  ipFamilyPolicy: PreferDualStack
  clusterIPs: [198.19.0.60, "2001:db8:5::60"]
  ports: [{name: web, port: 80, targetPort: web}]
"""
VIP = {4: "198.19.0.60", 6: "2001:db8:5::60"}
SIZE = 24 << 20


def transfer(run, dst_addr, port, family, size=SIZE):
    """a sends `size` bytes to b (through dst_addr:port) and b echoes a digest back:
    -> (digest a sent, digest b got)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    srv = run.listen_tcp("t/b", 8080, family)
    got = {}

    def serve():
        c, _ = srv.accept()
        c.settimeout(20)
        h, n = hashlib.sha256(), 0
        while n < size:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        got["digest"] = h.hexdigest()
        c.sendall(b"done")
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s = run.sock("t/a", af, socket.SOCK_STREAM)
    s.settimeout(20)
    try:
        s.connect((dst_addr, port))
        data = os.urandom(1 << 20)
        h = hashlib.sha256()
        for _ in range(size >> 20):
            s.sendall(data)
            h.update(data)
        assert s.recv(4) == b"done"
    finally:
        s.close()
        t.join(20)
        srv.close()
    return h.hexdigest(), got.get("digest")


@pytest.mark.parametrize("port_type", ["veth", "tap"])
@pytest.mark.parametrize("family", [4, 6])
def test_super_frames_pass_whole_and_translated(switch_run, port_type, family):
    run = switch_run(SVC, port_type=port_type)
    sent, got = transfer(run, VIP[family], 80, family)
    assert sent == got
    st = run.sw.stats()
    assert st.switch["super_frames"] > 0, st.switch
    assert st.reasons["bad_offload"] == 0 and st.switch["oversize"] == 0 and st.switch["rewrite_failed"] == 0
    # every byte went in super-frames or MTU frames the pipeline judged; none dropped
    assert st.reasons["established"] + st.reasons["reply"] > 0


def test_offloads_off_carries_the_same_in_small_frames(switch_run):
    run = switch_run(SVC, offloads=False)
    sent, got = transfer(run, VIP[4], 80, 4, size=8 << 20)
    assert sent == got
    st = run.sw.stats()
    assert st.switch["super_frames"] == 0 and st.switch["oversize"] == 0


def test_a_recording_of_super_frames_replays_to_the_same_verdicts(switch_run, tmp_path):
    run = switch_run(SVC, pcap=str(tmp_path))
    sent, got = transfer(run, VIP[4], 80, 4, size=4 << 20)
    assert sent == got
    run.sync()
    run.close()                      # the switch stops; its recorder writes the rest
    packets = list(read_capture(str(tmp_path / "in.pcapng")))
    supers = [p for p in packets if p.offload() and p.offload()[1]]
    assert supers and all(len(p.whole_frame()) == p.wire_len > len(p.frame) for p in supers)
    judged = 0
    compiled = compile_cluster(run.cluster)        # the switch's tables went with it
    for rp in replay(compiled, iter(packets), check=True, generations={1: compiled}):
        assert rp.agrees and rp.switch_agrees, rp
        judged += rp.recorded is not None
    assert judged >= len(supers)
