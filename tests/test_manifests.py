"""Loading manifests in every form kubectl takes, and refusing what the API server
would refuse: file:document:field: message, exit 2, nothing applied."""

import io
import json
import subprocess
import sys
import textwrap

import pytest

from pipeline.cli import main
from pipeline.load.errors import ManifestErrors
from pipeline.load.manifests import load

POD = """
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}]}]
"""


def load_text(text: str):
    return load(["-"], stdin=io.StringIO(textwrap.dedent(text)))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ManifestErrors) as e:
        load_text(text)
    return [str(x) for x in e.value.errors]


def test_multi_document_yaml_and_list_kinds(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.yaml").write_text(POD + "---\n" + POD.replace("name: a,", "name: b,"))
    (tmp_path / "sub" / "c.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}]}))
    (tmp_path / "a.yml").write_text(textwrap.dedent("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicyList
        items:
        - metadata: {name: p, namespace: x}
          spec: {podSelector: {}}
    """))
    (tmp_path / "notes.txt").write_text("ignored: not a manifest extension")
    result = load([str(tmp_path)])
    kinds = [type(o).__name__ for _, o in result.objects]
    # Directory order is sorted and recursive: a.yml, b.yaml, sub/c.json.
    assert kinds == ["NetworkPolicy", "Pod", "Pod", "Namespace"]


def test_stdin_via_cli(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(textwrap.dedent(POD)))
    assert main(["reach", "-f", "-", "-o", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert cells == [{"from": "x/a", "to": "x/a", "protocol": "TCP", "port": 80, "allowed": True}]


def test_unknown_kinds_are_skipped_with_a_note():
    result = load_text(POD + """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
""")
    assert len(result.objects) == 1
    assert any("Deployment 'web'" in n for n in result.notes)
    assert any("ConfigMap 'cfg'" in n for n in result.notes)


BAD = [
    ("yaml syntax", "apiVersion: v1\nkind: Pod\nmetadata: {name: [\n", "-:0:-: YAML syntax error"),
    ("no apiVersion", "kind: Pod\nmetadata: {name: a}\n", "-:0:apiVersion: Required value"),
    ("no kind", "apiVersion: v1\nmetadata: {name: a}\n", "-:0:kind: Required value"),
    ("bad operator", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector:
            matchExpressions: [{key: app, operator: Equals, values: [a]}]
        """, "-:0:spec.podSelector.matchExpressions[0].operator: Unsupported value: 'Equals'"),
    ("In without values", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector:
            matchExpressions: [{key: app, operator: In}]
        """, "-:0:spec.podSelector.matchExpressions[0].values: must be specified"),
    ("bad cidr", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{from: [{ipBlock: {cidr: 198.18.0.0/33}}]}]
        """, "-:0:spec.ingress[0].from[0].ipBlock.cidr: Invalid value: '198.18.0.0/33'"),
    ("except outside cidr", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          egress: [{to: [{ipBlock: {cidr: 198.18.0.0/24, except: [198.19.0.0/25]}}]}]
        """, "-:0:spec.egress[0].to[0].ipBlock.except[0]: Invalid value: '198.19.0.0/25': must be a strict subset"),
    ("endPort below port", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{ports: [{port: 100, endPort: 90}]}]
        """, "-:0:spec.ingress[0].ports[0].endPort: Invalid value: 90: must be greater than or equal to `port`"),
    ("bad protocol", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{ports: [{protocol: ICMP}]}]
        """, "-:0:spec.ingress[0].ports[0].protocol: Unsupported value: 'ICMP'"),
    ("bad policyTypes", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          policyTypes: [Ingress, Sideways]
        """, "-:0:spec.policyTypes[1]: Unsupported value: 'Sideways'"),
    ("bad port name", """
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          containers: [{name: c, ports: [{name: HTTP--x, containerPort: 80}]}]
        """, "-:0:spec.containers[0].ports[0].name: Invalid value: 'HTTP--x': must be a valid IANA_SVC_NAME"),
    ("numeric-only port name in policy", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{ports: [{port: web-server-port-1}]}]
        """, "-:0:spec.ingress[0].ports[0].port: Invalid value: 'web-server-port-1': must be a valid IANA_SVC_NAME"),
    ("bad pod IP", """
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        status: {podIP: 198.18.0.300}
        """, "-:0:status.podIPs[0].ip: Invalid value: '198.18.0.300'"),
    ("bad label value", """
        apiVersion: v1
        kind: Pod
        metadata: {name: a, labels: {app: -bad-}}
        """, "-:0:metadata.labels.app: Invalid value: '-bad-'"),
    ("bad name", """
        apiVersion: v1
        kind: Namespace
        metadata: {name: Prod_NS}
        """, "-:0:metadata.name: Invalid value: 'Prod_NS'"),
    ("endPort with named port", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{ports: [{port: http, endPort: 90}]}]
        """, "-:0:spec.ingress[0].ports[0].endPort: may not be specified when `port` is non-numeric"),
    ("ipBlock with selector", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          ingress: [{from: [{ipBlock: {cidr: 198.18.0.0/16}, podSelector: {}}]}]
        """, "-:0:spec.ingress[0].from[0]: may not specify more than 1 peer type"),
    ("port out of range", """
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          containers: [{name: c, ports: [{containerPort: 70000}]}]
        """, "-:0:spec.containers[0].ports[0].containerPort: Invalid value: 70000"),
]


@pytest.mark.parametrize("name,text,expected", BAD, ids=[b[0] for b in BAD])
def test_invalid_manifest_is_refused_precisely(name, text, expected):
    errs = errors_of(text)
    assert any(e.startswith(expected) for e in errs), errs


def test_error_points_at_the_document_index():
    errs = errors_of(POD + "---\n" + POD.replace("containerPort: 80", "containerPort: 0"))
    assert errs == ["-:1:spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"]


def test_duplicate_pod_ip_is_refused(tmp_path):
    f = tmp_path / "pods.yaml"
    f.write_text(POD.replace("spec:", "status: {podIP: 198.18.5.5}\nspec:") + "---\n"
                 + POD.replace("name: a,", "name: b,").replace("spec:", "status: {podIP: 198.18.5.5}\nspec:"))
    from pipeline.load.build import load_cluster
    with pytest.raises(ManifestErrors) as e:
        load_cluster([str(f)])
    assert str(e.value.errors[0]).startswith(f"{f}:1:status.podIPs[0].ip: Duplicate value: '198.18.5.5'")


def test_cli_exit_2_lists_all_errors_and_applies_nothing(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text(POD)
    bad = tmp_path / "b.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: z, labels: {a: '-'}}\n---\nkind: Pod\n")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "reach", "-f", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"{bad}:0:metadata.labels.a: Invalid value")
    assert lines[1] == f"{bad}:1:apiVersion: Required value: apiVersion must be set"
    assert "nothing applied" in lines[-1]


def test_missing_file_is_exit_2():
    assert main(["reach", "-f", "/nonexistent/netsem.yaml"]) == 2


def test_pods_without_ip_get_deterministic_addresses(make_cluster):
    text = POD + "---\n" + POD.replace("name: a,", "name: b,") + "---\n" + \
        POD.replace("name: a,", "name: c,").replace("spec:", "status: {podIP: 198.18.0.1}\nspec:")
    c = make_cluster(text)
    assert [str(p.ips[0]) for p in c.pod_list()] == ["198.18.0.2", "198.18.0.3", "198.18.0.1"]
    from pipeline.model.cluster import ClusterConfig
    c6 = make_cluster(POD, ClusterConfig(pod_cidrs=("198.18.0.0/16", "2001:db8:9::/64")))
    assert [str(ip) for ip in c6.pods["x/a"].ips] == ["198.18.0.1", "2001:db8:9::1"]


def test_get_o_yaml_dump_with_status_and_dual_stack(make_cluster):
    c = make_cluster("""
        apiVersion: v1
        kind: PodList
        items:
        - apiVersion: v1
          kind: Pod
          metadata: {name: a, namespace: x, uid: 1234, resourceVersion: "5"}
          spec: {containers: [{name: c, image: i}]}
          status:
            podIP: 198.18.3.3
            podIPs: [{ip: 198.18.3.3}, {ip: "2001:db8::3"}]
    """)
    assert [str(i) for i in c.pods["x/a"].ips] == ["198.18.3.3", "2001:db8::3"]
    assert c.plane.lookup_address_to_pod_mapping("cluster", "2001:db8::3") == "x/a"


def test_a_yaml_alias_bomb_is_refused_and_ordinary_aliases_load(tmp_path):
    """A "billion laughs" (nine levels of nine aliases: 490 M nodes from 38) is refused
    with exit 2 before anything walks it; an anchor used twice in one document loads."""
    import subprocess
    import sys
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  annotations:\n"
                    + "".join(f"    {line}\n" for line in levels))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "reach", "-f", str(bomb)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and f"{bomb}:0:-: excessive aliasing" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: &l {app: a}}\n"
                  "spec: {containers: [{name: c, ports: [{containerPort: 80}]}], nodeSelector: *l}\n")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "reach", "-f", str(ok)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
