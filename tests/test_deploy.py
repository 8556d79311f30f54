"""deploy/: the ClusterRole grants list and watch on every kind the watcher follows
(and nothing more), and the Deployment's arguments are a valid `netsem` command."""
import os

import yaml

from pipeline.cli.app import build_parser
from pipeline.load.kube import KINDS

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")


def docs(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_the_cluster_role_is_exactly_list_and_watch_on_the_watched_kinds():
    [role] = [d for d in docs("rbac.yaml") if d["kind"] == "ClusterRole"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert all(set(rule["verbs"]) == {"list", "watch"} for rule in role["rules"])
    assert granted == {(k.group, k.plural) for k in KINDS}
    [binding] = [d for d in docs("rbac.yaml") if d["kind"] == "ClusterRoleBinding"]
    [sa] = [d for d in docs("rbac.yaml") if d["kind"] == "ServiceAccount"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]


def test_the_deployment_runs_a_valid_watch_command_as_its_service_account():
    [dep] = docs("watch.yaml")
    spec = dep["spec"]["template"]["spec"]
    [sa] = [d for d in docs("rbac.yaml") if d["kind"] == "ServiceAccount"]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    args = build_parser().parse_args(spec["containers"][0]["args"])
    assert args.command == "watch" and args.output == "jsonl"
