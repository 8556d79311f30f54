"""The soft-switch commands: netsem up, down, exec, probe."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ..model.dns import DEFAULT_DNS_ADDRESS, DNSError
from .common import (UsageError, add_manifest_args, cluster_config, load, network_named, parse_ports,
                     parse_protocols)


PREFIX_HELP = ("run name prefix: nsm followed by up to 6 letters or digits, named in every "
               "namespace and link of the run (default: nsm + 4 random hex digits)")


def run_prefix(value: str) -> str:
    """--prefix, checked as it is parsed: a bad one is a usage error (exit 2)."""
    from ..switch.netns import check_prefix
    try:
        check_prefix(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _need_root(cmd: str) -> None:
    if os.geteuid() != 0:
        raise UsageError(f"{cmd} creates network namespaces: run it as root")


def cmd_up(args) -> int:
    from ..load.kube import KubeError
    from ..switch.up import run_up
    _need_root("up")
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port: {args.metrics_port} is not a port number (1-65535)")
    if not 0 <= args.max_connections <= 1 << 30:
        raise UsageError(f"--max-connections: {args.max_connections} is not between 1 and {1 << 30} "
                         "(or 0, the default)")
    if not 0 <= args.max_connections_per_pod <= 1 << 30:
        raise UsageError(f"--max-connections-per-pod: {args.max_connections_per_pod} is not between 1 and "
                         f"{1 << 30} (or 0, the default: no limit)")
    if args.stats_interval <= 0:
        raise UsageError("--stats-interval must be more than 0 seconds")
    if args.cluster_dns != "none":
        try:
            ipaddress.ip_address(args.cluster_dns)
        except ValueError:
            raise UsageError(f"--cluster-dns: {args.cluster_dns!r} is neither an IP address nor none") from None
    # Line by line even when redirected: scripts wait for "ready" and read flows live.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    try:
        return _run_up(args, run_up)
    except (KubeError, LookupError) as e:
        raise UsageError(str(e)) from None
    except DNSError as e:
        raise UsageError(f"--cluster-dns: {e}") from None


def _run_up(args, run_up) -> int:
    from ..switch.sources import ApiSource, FileSource
    if bool(args.files) == bool(args.kubeconfig):
        raise UsageError("give the manifests (-f) or a cluster to follow (--kubeconfig), one of them")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers: {args.workers} is not between 1 and 64")
    if args.workers > 1 and (args.port_type != "veth" or args.pcap):
        raise UsageError("--workers N > 1 spreads each veth port over N threads (PACKET_FANOUT): "
                         "not with --port-type tap, nor --pcap (one capture ring)")
    if not 0 <= args.coalesce <= 1000:
        raise UsageError(f"--coalesce: {args.coalesce} microseconds is not between 0 and 1,000")
    if not 0 <= args.busy_poll <= 10_000_000:
        raise UsageError(f"--busy-poll: {args.busy_poll} microseconds is not between 0 and 10,000,000")
    if not 0 <= args.max_ports <= 65535:
        raise UsageError(f"--max-ports: {args.max_ports} is not between 1 and 65535 (or 0, the default)")
    if args.attach and (args.prefix or args.port_type != "veth"):
        raise UsageError("--attach PREFIX takes over that run as it is: no --prefix, no --port-type tap")
    source = FileSource(args.files, cluster_config(args)) if args.files else \
        ApiSource(args.kubeconfig, args.context, cluster_config(args),
                  note=lambda s: print(f"note: {s}", file=sys.stderr))
    return run_up(source, cluster_config(args), port_type=args.port_type, max_ports=args.max_ports,
                  stats_interval=args.stats_interval, prefix=args.attach or args.prefix, ring=args.ring,
                  duration=args.duration, pcap=args.pcap, flows=args.flows,
                  metrics_port=args.metrics_port, metrics_address=args.metrics_address,
                  max_connections=args.max_connections,
                  max_connections_per_pod=args.max_connections_per_pod, attach=bool(args.attach),
                  offloads=args.offloads == "on", busy_poll_us=args.busy_poll or 0, workers=args.workers,
                  coalesce_us=args.coalesce,
                  cluster_dns=None if args.cluster_dns == "none" else args.cluster_dns)


def cmd_down(args) -> int:
    from ..switch.netns import down
    _need_root("down")
    removed = down(args.prefix)
    for r in removed:
        print(f"removed {r}")
    if not removed:
        print("nothing to remove")
    return 0


def cmd_exec(args) -> int:
    from ..switch.pod_exec import exec_in_pod
    from ..switch.netns import wait_ready
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("give a command after --")
    try:
        state = wait_ready(args.prefix, args.timeout)
        return exec_in_pod(state, args.pod, argv)
    except LookupError as e:
        raise UsageError(str(e)) from None


def cmd_probe(args) -> int:
    from ..switch.probe import probe
    from .render import render_probe
    _need_root("probe")
    cluster = load(args)
    protocols = parse_protocols(args.protocols)
    ports = parse_ports(args.ports) if args.ports else None
    net = network_named(cluster, args.network)
    if net is not None and (args.services or args.via == "service"):
        raise UsageError("--network: Services are reachable on the cluster network only "
                         "(--services and --via service probe the cluster network)")
    report = probe(cluster, ports=ports, protocols=protocols, timeout=args.timeout, mode=args.mode,
                   prefix=args.prefix, port_type=args.port_type, pcap=args.pcap,
                   via_service=args.via == "service", services=args.services,
                   network=net.name if net is not None else None)
    if report.skipped:
        print(f"note: not probed (no interface of their own: hostNetwork): {', '.join(report.skipped)}",
              file=sys.stderr)
    render_probe(report, args.output, sys.stdout)
    return 1 if report.differ or report.services_differ else 0


def add_switch_parsers(sub) -> None:
    up = sub.add_parser("up", help="run the soft switch: every pod a network namespace",
                        description="Build one network namespace per pod, wired to a userspace switch "
                                    "that forwards through the native pipeline, and run it in the "
                                    "foreground with a status line. It prints 'netsem up: ready' (and "
                                    "records it in the run's state file, which `netsem exec` waits for) "
                                    "once the switch forwards. Ctrl-C or SIGTERM tears everything down; "
                                    "SIGHUP re-reads the manifests and brings the switch to them: pods "
                                    "that came are wired, pods that went unwired, tables swapped between "
                                    "two batches (established connections survive; a bad manifest keeps "
                                    "everything as it was). With --kubeconfig it follows the API server "
                                    "the same way, change by change.")
    add_manifest_args(up, required=False)
    up.add_argument("--kubeconfig", metavar="FILE",
                    help="follow a cluster's API server instead of files (as `netsem watch`): pods that "
                         "appear become namespaces on the running switch, pods that go are removed, "
                         "labels, policies and endpoints update the tables, without a restart")
    up.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current-context)")
    up.add_argument("--max-ports", type=int, default=0, metavar="N",
                    help="switch ports at most, pods that come later included (default: 1024, or twice "
                         "the first generation's interfaces if more); a generation that needs more is "
                         "refused and the running one kept")
    up.add_argument("--port-type", choices=("veth", "tap"), default="veth",
                    help="how pods are joined to the switch (default veth)")
    up.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                    help="seconds between status lines (default 1)")
    up.add_argument("--prefix", type=run_prefix, help=PREFIX_HELP)
    up.add_argument("--pcap", metavar="DIR",
                    help="record every frame that enters the switch to DIR/in.pcapng and every "
                         "frame it sends to DIR/out.pcapng (pcapng, one interface per port named "
                         "ns/pod); `netsem replay -f MANIFESTS --pcap DIR/in.pcapng --check` "
                         "re-checks the run offline")
    up.add_argument("--flows", metavar="FILE",
                    help="write one JSON line per connection event (new, denied, closed, expired, "
                         "revoked) and per dropped packet, in Hubble's flow vocabulary, to FILE "
                         "(- for stdout); off by default")
    up.add_argument("--metrics-port", type=int, metavar="N",
                    help="serve Prometheus metrics on port N (/metrics): packets and bytes per port, "
                         "drops by reason, connections by state, hits per policy rule, table fill; "
                         "off by default")
    up.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                    help="address the metrics server listens on (default 127.0.0.1)")
    up.add_argument("--max-connections", type=int, default=0, metavar="N",
                    help="connection tracker capacity (default 1,048,576); when full, new "
                         "connections are dropped conntrack_full")
    up.add_argument("--attach", metavar="PREFIX", type=run_prefix,
                    help="take over run PREFIX after its netsem up was killed: its namespaces and links "
                         "as they are, and its connections, which live in a shared-memory file "
                         "(/dev/shm/PREFIX.ct) that a restart maps again, so established connections "
                         "carry on; then the switch is brought to the manifests as by SIGHUP. veth "
                         "runs only (a TAP device closes with its process)")
    up.add_argument("--max-connections-per-pod", type=int, default=0, metavar="N",
                    help="at most N live connections opened from one pod interface (the uplink "
                         "counts as one), so that one pod cannot fill the tracker for the others; "
                         "beyond it, new connections are dropped conntrack_pod_limit (default: no "
                         "limit)")
    up.add_argument("--cluster-dns", default=DEFAULT_DNS_ADDRESS, metavar="IP|none",
                    help=f"the cluster DNS Service's address (default {DEFAULT_DNS_ADDRESS}): unless the "
                         f"manifests have kube-system/kube-dns, it and one pod behind it are added; netsem "
                         f"answers A/AAAA for SERVICE.NS.svc.cluster.local there, and `netsem exec` gives "
                         f"pods a resolv.conf pointing at it. DNS traffic is policed like any other "
                         f"(allow egress to k8s-app=kube-dns in kube-system on 53). none: no DNS")
    up.add_argument("--ring", choices=("v2", "v3"), default="v2",
                    help="AF_PACKET RX ring: v2 wakes per frame (low latency, default), v3 per block")
    up.add_argument("--offloads", choices=("on", "off"), default="on",
                    help="on (default): pods keep their default offloads (TSO, GSO, checksum); the switch "
                         "carries virtio-net headers, receives 64 KB GSO super-frames and partial "
                         "checksums, judges each super-frame once and sends it on whole, so the kernel "
                         "segments only where it must. off: offloads off on every link, frames of at "
                         "most 2 KiB")
    up.add_argument("--busy-poll", type=int, nargs="?", const=1000, default=0, metavar="US",
                    help="spin on the rings instead of sleeping while frames come, and sleep only after "
                         "US microseconds (default 1000) without one: lower latency and more "
                         "connections per second, for a core kept busy (default: off, sleep when idle)")
    up.add_argument("--coalesce", type=int, default=0, metavar="US",
                    help="interrupt moderation, as a NIC's rx-usecs: after a batch of 8 frames or more "
                         "that did not fill, let frames gather for US microseconds (at most 1,000) before "
                         "looking again, so streams cost less CPU per packet; fewer frames never wait "
                         "(default 0: off; ignored with --busy-poll)")
    up.add_argument("--workers", type=int, default=1, metavar="N",
                    help="switch threads (default 1): each port's frames are spread over them by "
                         "PACKET_FANOUT with the kernel's symmetric flow hash, so a flow stays on one; "
                         "receiving, rewriting and sending run in parallel, the pipeline's batches one "
                         "at a time. veth only")
    up.add_argument("--duration", type=float, default=None, metavar="S",
                    help="stop after S seconds (default: run until Ctrl-C or SIGTERM)")
    up.set_defaults(func=cmd_up)

    dn = sub.add_parser("down", help="remove what soft-switch runs left behind",
                        description="Remove the namespaces, links and state files of a run (--prefix) "
                                    "or of every netsem run, including after a crash.")
    dn.add_argument("--prefix", type=run_prefix, help="only this run (default: every netsem run)")
    dn.set_defaults(func=cmd_down)

    ex = sub.add_parser("exec", help="run a command inside a pod's namespace",
                        description="Run CMD inside the network namespace of pod NS/POD of a running "
                                    "`netsem up` (like kubectl exec), once the switch is ready. Exit "
                                    "status: the command's; 2 when the run is not there or not ready.")
    ex.add_argument("--prefix", type=run_prefix, help="the run's prefix (needed when several runs are up)")
    ex.add_argument("--timeout", type=float, default=120.0, metavar="S",
                    help="how long to wait for the run to be ready (default 120)")
    ex.add_argument("pod", metavar="NS/POD", help="the pod, as namespace/name; or `uplink`, the namespace "
                                                  "that plays outside the cluster (198.19.192.1, 2001:db8:4::1)")
    ex.add_argument("argv", nargs="+", metavar="CMD",
                    help="the command and its arguments; put -- before it when it has options")
    ex.set_defaults(func=cmd_exec)

    pr = sub.add_parser("probe", help="real connections between every pair of pods, vs the model",
                        description="Build the topology, run the switch, listen in every pod on the ports "
                                    "probed, connect every pod to every pod, and print the observed matrix "
                                    "with every cell that differs from `netsem reach` marked. Exit 1 if any "
                                    "differs.")
    add_manifest_args(pr)
    pr.add_argument("--ports", help="comma-separated ports (default: the ports the pods declare)")
    pr.add_argument("--protocols", default=None,
                    help="comma-separated subset of TCP,UDP,SCTP (default: the protocols the pods declare)")
    pr.add_argument("-o", "--output", choices=("table", "json"), default="table",
                    help="table for people, json for programs (default table)")
    pr.add_argument("--timeout", type=float, default=1.0, metavar="S",
                    help="how long a probe waits before calling it denied (default 1)")
    pr.add_argument("--mode", choices=("sockets", "packets"), default="sockets",
                    help="sockets (default): kernel TCP/UDP sockets; packets: crafted frames, "
                         "answered by netsem itself (SCTP always uses crafted packets)")
    pr.add_argument("--prefix", type=run_prefix, help=PREFIX_HELP)
    pr.add_argument("--port-type", choices=("veth", "tap"), default="veth",
                    help="how pods are joined to the switch (default veth)")
    pr.add_argument("--pcap", metavar="DIR", help="record the probes' frames to DIR/in.pcapng and "
                                                  "DIR/out.pcapng (as netsem up --pcap)")
    pr.add_argument("--services", action="store_true",
                    help="also connect from every pod and from the uplink to every TCP/UDP port of every "
                         "Service with a virtual "
                         "IP, 32 times each; the backends answer with their names, so the cells show where "
                         "policy lets a Service be reached and how the load spread")
    pr.add_argument("--via", choices=("pod", "service"), default="pod",
                    help="pod (default): connect to each pod's own address; service: through a ClusterIP "
                         "Service generated per destination pod, selecting only it, as the upstream "
                         "NetworkPolicy e2e suite probes (a pod probing itself still uses its own address)")
    pr.add_argument("--network", metavar="NS/NAME",
                    help="probe the network of this NetworkAttachmentDefinition instead of the cluster "
                         "network: the pods attached to it, each at its address on it (its net1, ...), "
                         "against `netsem reach --network` of the same network")
    pr.set_defaults(func=cmd_probe)
