"""`netsem watch`: a live audit of reachability. Follows the API server (list, then
watch, per kind) and prints every change in what is allowed, with the object change
that caused it."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from .common import UsageError, add_cluster_args, cluster_config, parse_ports, parse_protocols

VERBS = {"ADDED": "added", "MODIFIED": "changed", "DELETED": "deleted"}
POLICY_VERBS = {"ADDED": "applied", "MODIFIED": "changed", "DELETED": "deleted"}
POLICY_KINDS = ("NetworkPolicy", "MultiNetworkPolicy")


def describe(change) -> str:
    """'policy shop/deny applied', 'pod shop/web-0 deleted', ..."""
    what = "policy" if change.kind in POLICY_KINDS else \
        {"NetworkAttachmentDefinition": "network attachment definition",
         "EndpointSlice": "endpoint slice"}.get(change.kind, change.kind.lower())
    verb = (POLICY_VERBS if change.kind in POLICY_KINDS else VERBS)[change.type]
    name = f"{change.namespace}/{change.name}" if change.namespace else change.name
    why = {"relist": " (found on relist after the watch expired)",
           "resync": " (drift: found by the periodic resync, missed by the watch)"}.get(change.why, "")
    return f"{what} {name} {verb}{why}"


def _pairs(pairs, cap: int) -> list:
    return [{"from": a, "to": b} for a, b in (pairs if cap <= 0 else pairs[:cap])]


def render_change(change, changes, rejected, output: str, max_pairs: int, out) -> None:
    stamp = datetime.fromtimestamp(change.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = describe(change)
    if output == "jsonl":
        rec = {"time": stamp, "cause": {"type": change.type, "kind": change.kind, "namespace": change.namespace,
                                        "name": change.name, "resourceVersion": change.resource_version,
                                        "why": change.why},
               "summary": head}
        if rejected:
            rec["rejected"] = rejected
        else:
            rec["changes"] = [{"protocol": c.protocol, "port": c.port, "lost": len(c.lost), "gained": len(c.gained),
                               "lostPairs": _pairs(c.lost, max_pairs), "gainedPairs": _pairs(c.gained, max_pairs),
                               "truncated": 0 < max_pairs < max(len(c.lost), len(c.gained))}
                              for c in changes]
        print(json.dumps(rec), file=out, flush=True)
        return
    if rejected:
        print(f"{stamp} {head}: rejected, the model stays as it was:", file=out)
        for m in rejected:
            print(f"    {m}", file=out)
        out.flush()
        return
    parts = []
    for c in changes:
        for n, word in ((len(c.lost), "lost"), (len(c.gained), "gained")):
            if n:
                parts.append(f"{n} pair{'s' if n != 1 else ''} {word} {c.protocol}/{c.port}")
    print(f"{stamp} {head}: {', '.join(parts)}", file=out)
    for c in changes:
        for pairs, word in ((c.lost, "lost"), (c.gained, "gained")):
            shown = pairs if max_pairs <= 0 else pairs[:max_pairs]
            for a, b in shown:
                print(f"    {word:<6} {c.protocol}/{c.port}  {a} -> {b}", file=out)
            if len(shown) < len(pairs):
                print(f"    ... {len(pairs) - len(shown)} more {word} (--max-pairs 0 shows all)", file=out)
    out.flush()


def render_initial(audit, output: str, out) -> None:
    from .render import print_matrix_table
    for i, (combo, m) in enumerate(sorted(audit.matrices.items())):
        if output == "jsonl":
            allowed = [{"from": m.pods[a].key, "to": m.pods[b].key} for a, b in zip(*m.allowed.nonzero())]
            print(json.dumps({"initial": True, "protocol": combo[0], "port": combo[1],
                              "pods": [p.key for p in m.pods], "allowedPairs": allowed}), file=out)
        else:
            if i:
                print(file=out)
            print_matrix_table(m, out)
    out.flush()


def cmd_watch(args) -> int:
    from ..load.kube import KubeError, Watcher, api_client
    from ..load.live import LiveCluster
    from ..model.audit import ReachAudit
    protocols = parse_protocols(args.protocols)
    ports = [(proto, port) for proto in (protocols or ["TCP", "UDP", "SCTP"])
             for port in parse_ports(args.ports)] if args.ports else None
    config = cluster_config(args)
    out = sys.stdout
    try:
        api = api_client(args.kubeconfig, args.context)
        watcher = Watcher(api, resync_s=args.resync, on_note=lambda s: print(f"note: {s}", file=sys.stderr))
        objects = watcher.start()
    except KubeError as e:
        raise UsageError(str(e)) from None
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *a: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        live = LiveCluster(config)
        for m in live.load(objects):
            print(f"note: left out: {m}", file=sys.stderr)
        audit = ReachAudit(ports, protocols)
        audit.observe(live.cluster)
        print(f"netsem watch: {len(live.cluster.pods)} pods, {len(live.cluster.policies)} NetworkPolicies, "
              f"{len(live.cluster.multi_policies)} MultiNetworkPolicies; watching "
              f"{', '.join(i.kind.plural for i in watcher.informers)}", file=sys.stderr, flush=True)
        if args.since_start:
            render_initial(audit, args.output, out)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                change = watcher.changes.get(timeout=0.1)
            except Exception:           # queue.Empty
                continue
            applied = live.apply(change.type, change.obj)
            if applied.rejected:
                render_change(change, [], applied.rejected, args.output, args.max_pairs, out)
            elif applied.changed:
                changes = audit.observe(applied.after)
                if changes:
                    render_change(change, changes, [], args.output, args.max_pairs, out)
    finally:
        watcher.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def add_watch_parser(sub) -> None:
    w = sub.add_parser("watch", help="follow a cluster's API server and print every change in what is allowed",
                       description="List and watch the cluster's Namespaces, Pods, Services, EndpointSlices, "
                                   "NetworkPolicies (and NetworkAttachmentDefinitions and MultiNetworkPolicies "
                                   "where the server has them) and print, as each change happens, the pairs of "
                                   "pods it lets connect or stops from connecting on each declared port, with "
                                   "the object change that caused it. Needs list and watch on those kinds "
                                   "(deploy/rbac.yaml).")
    w.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the pod's "
                        "service account when run in a cluster)")
    w.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current-context)")
    w.add_argument("-o", "--output", choices=("text", "jsonl"), default="text",
                   help="text (default), or one JSON object per change (cause, and per port the pairs "
                        "lost and gained)")
    w.add_argument("--since-start", action="store_true",
                   help="print the initial reachability matrices first, then the changes")
    w.add_argument("--ports", help="comma-separated ports to audit (default: the ports the pods declare, "
                                   "as they change)")
    w.add_argument("--protocols", default=None, help="comma-separated protocols (TCP,UDP,SCTP; default all)")
    w.add_argument("--max-pairs", type=int, default=20, metavar="N",
                   help="pairs listed per port and direction of a change (default 20; 0: all)")
    w.add_argument("--resync", type=float, default=300.0, metavar="S",
                   help="relist every S seconds and report drift the watch missed (default 300)")
    w.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until interrupted)")
    add_cluster_args(w)
    w.set_defaults(func=cmd_watch)
