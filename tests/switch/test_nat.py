"""Source NAT and ICMP errors through Services, on real packets in namespaces: a pod
reaching itself through its own Service (hairpin), and an ICMP error from a backend
that reaches the client as one from the VIP, so the client's socket sees it."""

import subprocess
import sys
import time

import pytest

from .test_up import ASK, NETSEM, REFUSED, ROOT, SERVE_ONE, exec_in, metrics_once, up  # noqa: F401 (fixture)

SOLO = """
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: shop, labels: {app: solo}}
spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: solo, namespace: shop}
spec:
  selector: {app: solo}
  clusterIP: 198.19.0.60
  ports:
  - {name: web, port: 80, targetPort: web}
  - {name: probe, port: 9, protocol: UDP, targetPort: 9999}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: solo-open, namespace: shop}
spec: {podSelector: {matchLabels: {app: solo}}, ingress: [{}]}
"""


@pytest.mark.parametrize("up", [SOLO], indirect=True)
def test_a_pod_reaches_itself_through_its_own_service_and_errors_come_from_the_vip(up):  # noqa: F811
    """Hairpin: shop/solo connects to its own Service and its own server answers; the
    server sees the node's address (source NAT, so the reply comes back through the
    switch), the client sees the VIP. Then a UDP datagram through the VIP to a port
    nothing listens on: the backend's kernel sends an ICMP port unreachable about the
    translated datagram, the switch translates it back, and the client's connected
    socket is refused, as it is from the VIP it sent to."""
    proc, prefix, flows, port, manifests = up
    server = subprocess.Popen(NETSEM + ["exec", "--prefix", prefix, "--timeout", "60", "shop/solo", "--",
                                        sys.executable, "-c", SERVE_ONE, "8080", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline, r = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            r = exec_in(prefix, "shop/solo", sys.executable, "-c", ASK, "198.19.0.60", "80")
            if r.stdout.startswith("answer"):
                break
            time.sleep(0.5)
        assert r.stdout.split() == ["answer", "198.19.128.1", "198.19.0.60"], (r.stdout, r.stderr)
    finally:
        server.kill()
        server.wait()
    r = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", REFUSED, "198.19.0.60", "9", "udp")
    words = r.stdout.split()
    assert words and words[0] == "refused" and float(words[1]) < 1.0, (r.stdout, r.stderr)
    # the error went through as related (not dropped icmp_error_no_connection)
    text = metrics_once(port, 'reason="related"')
    assert 'netsem_packets_total{reason="related",verdict="forward"}' in text, text
    assert 'netsem_packets_total{reason="icmp_error_no_connection",verdict="drop"} 0.0' in text
