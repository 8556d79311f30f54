"""`netsem up` as a user runs it, in a subprocess: it says when it is ready, `netsem
exec` started at the same moment waits for that, flow records name the deciding rule
of every allowed and denied connection, and the metrics port serves the counters."""

import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pipeline.switch.netns import down

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "shop")
NETSEM = [sys.executable, "-m", "pipeline.cli"]
CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(1.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except ConnectionRefusedError:
    print("refused")          # a RST came back: the packets went both ways
except OSError as e:
    print("failed", e)
"""


DENY_BACKEND = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-no-egress, namespace: shop}
spec: {podSelector: {matchLabels: {app: frontend}}, policyTypes: [Egress]}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def up(tmp_path, request):
    """`netsem up` on a copy of the examples (plus the manifest text in the test's
    `up` parameter, if any)."""
    prefix = "nsm" + secrets.token_hex(2)
    flows = tmp_path / "flows.jsonl"
    port = free_port()
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, manifests)
    if getattr(request, "param", None):
        (manifests / "50-extra.yaml").write_text(request.param)
    proc = subprocess.Popen(NETSEM + ["up", "-f", str(manifests), "--prefix", prefix, "--flows", str(flows),
                                      "--metrics-port", str(port), "--stats-interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        yield proc, prefix, flows, port, manifests
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        down(prefix)


def metrics_once(port, wanted: str, timeout: float = 10) -> str:
    """The metrics page once it contains `wanted` (or the last one after `timeout`)."""
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline and wanted not in text:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        time.sleep(0.3)
    return text


def exec_in(prefix, pod, *argv, timeout=60):
    r = subprocess.run(NETSEM + ["exec", "--prefix", prefix, "--timeout", "60", pod, "--", *argv],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r


def test_up_flows_metrics_reload_and_exec_waiting_for_ready(up):
    proc, prefix, flows, port, manifests = up
    # Started right away: exec must wait until the switch forwards (the run's state
    # file may not even exist yet).
    allowed = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", CONNECT, "198.18.0.3", "8080")
    assert allowed.returncode == 0, allowed.stderr
    # Its output goes to a pipe, and still comes line by line while it runs.
    seen = []
    deadline = time.monotonic() + 10
    while "netsem up: ready" not in seen and time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            seen.append(proc.stderr.readline().strip())
    assert "netsem up: ready" in seen, seen
    assert allowed.stdout.strip() in ("connected", "refused"), allowed.stdout
    denied = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", CONNECT, "198.18.0.2", "5432")
    assert denied.stdout.startswith("failed"), denied.stdout
    # Let the switch loop drain the ring (a slice is 50 ms).
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline:
        records = [json.loads(x) for x in flows.read_text().splitlines()] if flows.exists() else []
        if any(r["netsem"]["event"] == "denied" for r in records) and \
                any(r["netsem"]["event"] == "new" and r["IP"]["destination"] == "198.18.0.3" for r in records):
            break
        time.sleep(0.2)
    new = [r for r in records if r["netsem"]["event"] == "new" and r["IP"]["destination"] == "198.18.0.3"]
    assert new, records
    assert new[0]["verdict"] == "FORWARDED"
    assert new[0]["source"]["pod_name"] == "frontend-0" and new[0]["source"]["namespace"] == "shop"
    assert new[0]["ingress_allowed_by"] == [{"kind": "NetworkPolicy", "namespace": "shop",
                                             "name": "backend-allow-frontend", "rule": "ingress[0]"}]
    denied = [r for r in records if r["netsem"]["event"] == "denied" and r["IP"]["destination"] == "198.18.0.2"]
    assert denied and denied[0]["verdict"] == "DROPPED" and denied[0]["drop_reason_desc"] == "POLICY_DENIED"
    # the default deny: named by the policies that isolate db-0 for ingress
    assert denied[0]["netsem"]["reason"] == "denied_ingress" and denied[0]["traffic_direction"] == "INGRESS"
    assert {(p["namespace"], p["name"]) for p in denied[0]["ingress_denied_by"]} == \
        {("data", "db-allow-clients"), ("data", "default-deny-all")}
    text = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:    # the snapshot is taken once a second
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if 'netsem_policy_rule_hits_total{direction="ingress",namespace="shop",' in text:
            break
        time.sleep(0.3)
    assert 'netsem_port_packets_total{direction="rx",port="shop/frontend-0"}' in text
    assert 'netsem_drops_total{reason="denied_ingress"}' in text
    assert 'netsem_policy_rule_hits_total{direction="ingress",namespace="shop",policy="backend-allow-frontend",rule="0"}' in text
    assert 'netsem_connections{state="SYN_SENT"}' in text or 'netsem_connections{state="CLOSED"}' in text
    assert 'netsem_table_capacity{table="connections"} 1.048576e+06' in text
    # SIGHUP: a bad manifest keeps the old tables; a good one swaps them in.
    (manifests / "40-bad.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    (manifests / "40-bad.yaml").unlink()
    (manifests / "40-deny.yaml").write_text(DENY_BACKEND)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    again = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", CONNECT, "198.18.0.3", "8080")
    assert again.stdout.startswith("failed"), again.stdout
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [json.loads(x) for x in flows.read_text().splitlines()]
        late = [r for r in records if r["netsem"]["event"] == "denied" and r["IP"]["destination"] == "198.18.0.3"]
        if late:
            break
        time.sleep(0.2)
    assert late and {p["name"] for p in late[0]["egress_denied_by"]} == {"frontend-no-egress"}
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "drops" in err
    assert "metadata.name: Invalid value: 'Bad_Name'" in err and "reload failed; old tables kept" in err
    assert "netsem up: reloaded (generation 2)" in err
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in netns if n.startswith(prefix)]


def test_exec_gives_up_on_a_run_that_is_not_there():
    r = subprocess.run(NETSEM + ["exec", "--prefix", "nsmzz9", "--timeout", "0.5", "t/a", "--", "true"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "no netsem run with prefix 'nsmzz9'" in r.stderr


SERVE_ONE = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
s.settimeout(20)
for _ in range(int(sys.argv[2])):
    c, peer = s.accept()
    c.sendall(f"{peer[0]}\\n".encode())   # who the backend sees
    c.close()
"""
ASK = """
import socket, sys
s = socket.socket()
s.settimeout(2.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("answer", s.recv(100).decode().strip(), s.getpeername()[0])
except OSError as e:
    print("failed", e)
"""


def test_a_cluster_ip_reaches_its_backend_with_the_client_address_and_answers_from_itself(up):
    """Real TCP through shop/backend's ClusterIP (198.19.0.2:80 -> backend-0:8080):
    the backend sees the client's own address, the client sees the VIP answer. A port
    the Service does not expose, and a client policy does not allow, get nothing."""
    proc, prefix, flows, port, manifests = up
    server = subprocess.Popen(NETSEM + ["exec", "--prefix", prefix, "--timeout", "60", "shop/backend-0", "--",
                                        sys.executable, "-c", SERVE_ONE, "8080", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        r = None
        while time.monotonic() < deadline:
            r = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", ASK, "198.19.0.2", "80")
            if r.stdout.startswith("answer"):
                break
            time.sleep(0.5)
        assert r.stdout.split() == ["answer", "198.18.0.4", "198.19.0.2"], (r.stdout, r.stderr)
        assert exec_in(prefix, "shop/frontend-0", sys.executable, "-c", ASK, "198.19.0.2", "81").stdout \
            .startswith("failed")
        assert exec_in(prefix, "data/backup-0", sys.executable, "-c", ASK, "198.19.0.2", "80").stdout \
            .startswith("failed")
        deadline = time.monotonic() + 10
        reasons = set()
        while time.monotonic() < deadline and not {"service_port_unknown", "denied_egress"} <= reasons:
            records = [json.loads(x) for x in flows.read_text().splitlines()] if flows.exists() else []
            reasons = {x["netsem"]["reason"] for x in records if x["IP"]["destination"] == "198.19.0.2"}
            time.sleep(0.2)
        assert {"service_port_unknown", "denied_egress", "new"} <= reasons, reasons   # backup: egress to db only
    finally:
        server.kill()
        server.wait()


NO_BACKEND = """
apiVersion: v1
kind: Service
metadata: {name: nothing, namespace: shop}
spec:
  selector: {app: nobody}
  clusterIP: 198.19.0.50
  ports: [{name: web, port: 80}, {name: dns, port: 53, protocol: UDP}]
"""
REFUSED = """
import socket, sys, time
t = time.monotonic()
s = socket.socket(type=socket.SOCK_DGRAM if sys.argv[3] == "udp" else socket.SOCK_STREAM)
s.settimeout(3.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    if sys.argv[3] == "udp":
        s.send(b"q")
        s.recv(10)
    print("answered")
except ConnectionRefusedError:
    print("refused", round(time.monotonic() - t, 2))
except OSError as e:
    print("failed", e)
"""


@pytest.mark.parametrize("up", [NO_BACKEND], indirect=True)
def test_a_service_port_without_a_ready_backend_is_refused_at_once(up):
    """As kube-proxy REJECTs: TCP gets a reset, UDP an ICMP port unreachable, so the
    client fails at once instead of timing out."""
    proc, prefix, flows, port, manifests = up
    tcp = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", REFUSED, "198.19.0.50", "80", "tcp")
    udp = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", REFUSED, "198.19.0.50", "53", "udp")
    for r in (tcp, udp):
        words = r.stdout.split()
        assert words and words[0] == "refused" and float(words[1]) < 1.0, (r.stdout, r.stderr)
    text = metrics_once(port, "netsem_service_rejects_total 2.0")
    assert "netsem_service_rejects_total 2.0" in text
    assert 'netsem_drops_total{reason="service_no_backend"} 2.0' in text


def test_the_uplink_plays_outside_reaching_a_node_port_and_reached_by_pods(up):
    """`netsem exec uplink`: a namespace on the uplink port (198.19.192.1). From there
    the example's NodePort (shop/frontend, 30080 on the node's address) reaches a
    frontend, which sees the real client. A pod reaches the uplink masqueraded: the
    outside sees the node's address, and the reply comes back to the pod. The outside
    does not reach a pod's address straight (pod_address_not_routed)."""
    proc, prefix, flows, port, manifests = up
    servers = [subprocess.Popen(NETSEM + ["exec", "--prefix", prefix, "--timeout", "60", where, "--",
                                          sys.executable, "-c", SERVE_ONE, p, n],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
               for where, p, n in (("shop/frontend-0", "80", "4"), ("shop/frontend-1", "80", "4"),
                                   ("uplink", "8443", "1"))]
    try:
        answers = set()
        deadline = time.monotonic() + 30
        while len(answers) < 1 and time.monotonic() < deadline:
            r = exec_in(prefix, "uplink", sys.executable, "-c", ASK, "198.19.128.1", "30080")
            if r.stdout.startswith("answer"):
                answers.add(r.stdout.strip())
            time.sleep(0.3)
        assert answers == {"answer 198.19.192.1 198.19.128.1"}, (answers, r.stdout, r.stderr)
        r = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", ASK, "198.19.192.1", "8443")
        assert r.stdout.split() == ["answer", "198.19.128.1", "198.19.192.1"], (r.stdout, r.stderr)
        r = exec_in(prefix, "uplink", sys.executable, "-c", ASK, "198.18.0.4", "80")
        assert r.stdout.startswith("failed"), r.stdout
        text = metrics_once(port, 'reason="pod_address_not_routed"')
        assert 'netsem_drops_total{reason="pod_address_not_routed"}' in text
    finally:
        for s in servers:
            s.kill()
            s.wait()
