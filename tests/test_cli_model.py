"""The model's commands as a user runs them on the bundled example: the exact text a
person reads and the JSON a program parses (`verdict`, `policies`, `reach`)."""

import json
import os

import pytest

from pipeline.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "shop")


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_verdict_explains_in_words(capsys):
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/frontend-0", "--to", "shop/backend-0",
                     "--port", "8080")
    assert rc == 0
    assert out.splitlines() == [
        "ALLOWED: shop/frontend-0 -> shop/backend-0 TCP/8080",
        "  egress from shop/frontend-0: not isolated (no policy selects it for Egress), allowed",
        "  ingress to shop/backend-0: isolated by shop/backend-allow-frontend, shop/default-deny-ingress; "
        "allowed by shop/backend-allow-frontend ingress[0]"]
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/frontend-0", "--to", "data/db-0",
                     "--port", "5432")
    assert rc == 1
    assert out.splitlines()[0] == "DENIED: shop/frontend-0 -> data/db-0 TCP/5432"
    assert out.splitlines()[2] == ("  ingress to data/db-0: isolated by data/db-allow-clients, "
                                   "data/default-deny-all; no rule allows it, denied")
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "198.19.9.9", "--to", "shop/backend-0",
                     "--port", "8080")
    assert rc == 1 and out.splitlines()[0] == "DENIED: 198.19.9.9 -> shop/backend-0 (198.18.0.3) TCP/8080"
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/backend-0", "--to", "198.19.200.200",
                     "--port", "443")
    assert out.splitlines()[1] == ("  egress from shop/backend-0: isolated by shop/backend-allow-frontend; "
                                   "no rule allows it, denied")
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "198.19.128.1", "--to", "data/db-0",
                     "--port", "5432")
    assert rc == 0 and "from node node to a pod on it: always allowed" in out
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "198.19.1.1", "--to", "198.19.1.2",
                     "--port", "1")
    assert rc == 1 and "neither address belongs to a pod" in out


def test_verdict_json(capsys):
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/frontend-0", "--to", "shop/backend-0",
                     "--port", "8080", "-o", "json")
    v = json.loads(out)
    assert (v["from"], v["to"], v["protocol"], v["port"], v["allowed"]) == \
        ("shop/frontend-0", "shop/backend-0", "TCP", 8080, True)
    assert v["connectionId"] == 1 and v["backend"] is None
    assert v["egress"] == {"direction": "Egress", "pod": "shop/frontend-0", "isolated": False, "policies": [],
                           "allowed": True, "rule": None, "tier": "default", "adminRule": None}
    assert v["ingress"] == {"direction": "Ingress", "pod": "shop/backend-0", "isolated": True,
                            "policies": ["shop/backend-allow-frontend", "shop/default-deny-ingress"],
                            "allowed": True, "tier": "networkpolicy", "adminRule": None,
                            "rule": {"policy": "shop/backend-allow-frontend", "direction": "Ingress",
                                     "index": 0, "id": 2}}
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/frontend-0", "--to", "shop/backend",
                     "--port", "80", "-o", "json")
    v = json.loads(out)
    assert v["backend"] == "shop/backend-0" and v["to"] == "shop/backend"
    assert v["backendPort"] == 8080
    assert v["notes"][0].startswith("service shop/backend maps to backend shop/backend-0 port 8080 ")
    rc, out, _ = run(capsys, "verdict", "-f", EXAMPLES, "--from", "shop/frontend-0", "--to", "198.19.7.7",
                     "--port", "80", "-o", "json")
    v = json.loads(out)
    assert v["ingress"] is None and v["egress"]["pod"] == "shop/frontend-0" and v["to"] == "198.19.7.7"


def test_policies_of_a_pod_and_a_namespace(capsys):
    rc, out, _ = run(capsys, "policies", "-f", EXAMPLES, "--pod", "shop/backend-0", "-o", "json")
    rel = json.loads(out)
    assert rel["selectedBy"] == {"Ingress": ["shop/backend-allow-frontend", "shop/default-deny-ingress"],
                                 "Egress": ["shop/backend-allow-frontend"]}
    assert rel["isolated"] == {"Ingress": True, "Egress": True} and not rel["hostNetwork"]
    rc, out, _ = run(capsys, "policies", "-f", EXAMPLES, "--namespace", "data")
    assert out.startswith("namespace data\n  policy data/backup-egress (Egress): selects data/backup-0")


def test_reach_with_services_polices_every_ready_backend(capsys):
    rc, out, _ = run(capsys, "reach", "-f", EXAMPLES, "--ports", "80", "--protocols", "TCP", "--services")
    assert rc == 0
    table = out[out.index("Services  (row: from"):].splitlines()
    assert table[1].split() == ["1", "2", "3"]
    assert table[5].split() == ["shop/frontend-0", "X", ".", "."]    # db denied, backend and frontend allowed
    assert table[-3:] == ["  1: data/db TCP/5432", "  2: shop/backend TCP/80", "  3: shop/frontend TCP/80"]
    rc, out, _ = run(capsys, "reach", "-f", EXAMPLES, "--ports", "80", "--protocols", "TCP", "--services", "-o", "json")
    cells = json.loads(out)
    svc = {(c["from"], c["service"], c["port"]): c for c in cells if "service" in c}
    assert len(cells) - len(svc) == 25 and len(svc) == 15
    c = svc[("shop/frontend-0", "shop/backend", 80)]
    assert c["allowed"] and c["to"] == "shop/backend" and c["backends"] == [
        {"backend": "shop/backend-0", "address": c["backends"][0]["address"], "port": 8080, "allowed": True}]
    assert not svc[("shop/frontend-0", "data/db", 5432)]["allowed"]


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"netsem {version('netsem')}"


def test_node_address_moves_the_node_ports(capsys, tmp_path):
    (tmp_path / "np.yaml").write_text("""
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: t, labels: {app: web}}
status: {podIP: 198.18.0.20}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t}
spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
""")
    args = ["verdict", "-f", str(tmp_path), "--from", "198.19.7.7", "--port", "30080", "-o", "json"]
    rc, out, _ = run(capsys, *args, "--to", "198.19.130.1", "--node-address", "198.19.130.1")
    v = json.loads(out)
    assert rc == 0 and (v["backend"], v["backendPort"]) == ("t/web", 80), v
    rc, out, _ = run(capsys, *args, "--to", "198.19.128.1", "--node-address", "198.19.130.1")
    assert rc == 1 and json.loads(out)["backend"] is None      # no longer the node's address
    rc, _, err = run(capsys, *args, "--to", "198.19.130.1", "--node-address", "198.19.130.1",
                     "--node-address", "198.19.130.2")
    assert rc == 2 and "--node-address: at most one IPv4 and one IPv6 address" in err
