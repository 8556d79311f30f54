"""`netsem isolation`: OpenContrail's isolation modes (003) as cluster-wide policy
manifests for the cluster the manifests describe (model/isolation.py)."""

from __future__ import annotations

import json
import sys

import yaml

from ..model.isolation import MODES, IsolationError, isolation_policies
from .common import UsageError, add_manifest_args, load


def add_isolation_parser(sub) -> None:
    p = sub.add_parser(
        "isolation", help="print the cluster-wide policies of an isolation mode (open, namespace, application)",
        description="Print AdminNetworkPolicy / BaselineAdminNetworkPolicy manifests (or ClusterNetworkPolicy "
                    "with --api v1alpha2) that put the cluster in one of OpenContrail's isolation modes: "
                    "open (every pod reaches every pod), namespace (pods reach their own namespace's pods "
                    "only) or application (pods reach their own application's pods only: the same value of "
                    "--app-label in their namespace). The shared namespaces (--shared, default kube-system: "
                    "DNS and the cluster's services) stay reachable. Isolation passes what it lets through "
                    "down to NetworkPolicy (Pass), so NetworkPolicies still apply within it; traffic to and "
                    "from outside the cluster is not touched. Apply the output with kubectl apply -f -, or "
                    "give it to netsem reach -f to see the matrix first.")
    add_manifest_args(p)
    p.add_argument("--mode", required=True, choices=MODES, help="the isolation mode")
    p.add_argument("--api", choices=("v1alpha1", "v1alpha2"), default="v1alpha1",
                   help="v1alpha1: AdminNetworkPolicy and BaselineAdminNetworkPolicy (default); v1alpha2: "
                        "ClusterNetworkPolicy")
    p.add_argument("--shared", action="append", metavar="NAMESPACE",
                   help="a namespace every pod may reach and be reached from (repeatable; default kube-system; "
                        "--shared '' for none)")
    p.add_argument("--app-label", default="app", help="the label that names a pod's application (default app)")
    p.add_argument("--first-priority", type=int, default=100,
                   help="the priority of the first policy; the others follow, one each (default 100)")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml",
                   help="yaml (a multi-document stream, default) or json (a List)")
    p.set_defaults(func=cmd_isolation)


def cmd_isolation(args) -> int:
    cluster = load(args)
    if not 0 <= args.first_priority <= 1000:
        raise UsageError("--first-priority: between 0 and 1000")
    try:
        docs = isolation_policies(cluster, args.mode, args.api, args.shared or ["kube-system"], args.app_label,
                                  args.first_priority)
    except IsolationError as e:
        raise UsageError(str(e))
    if args.output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, sys.stdout, indent=2)
        print()
    else:
        print(f"# netsem isolation --mode {args.mode}: {len(docs)} policies", flush=True)
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0
