"""The soft-switch commands (netsem up, down, exec, probe); cli.build_parser registers
them with add_switch_parsers(sub, common)."""

from __future__ import annotations

import sys


def _need_root(cmd: str) -> None:
    import os
    if os.geteuid() != 0:
        from .cli import UsageError
        raise UsageError(f"{cmd} creates network namespaces: run it as root")


def cmd_up(args) -> int:
    from .cli import load  # noqa: F401  (validates --pod-cidr the same way)
    from .cluster import ClusterConfig
    from .switch import run_up
    _need_root("up")
    config = ClusterConfig(pod_cidrs=tuple(args.pod_cidr)) if args.pod_cidr else ClusterConfig()
    return run_up(args.files, config, port_type=args.port_type, stats_interval=args.stats_interval,
                  prefix=args.prefix, ring=args.ring, duration=args.duration, pcap=args.pcap)


def cmd_down(args) -> int:
    from .topology import down
    _need_root("down")
    removed = down(args.prefix)
    for r in removed:
        print(f"removed {r}")
    if not removed:
        print("nothing to remove")
    return 0


def cmd_exec(args) -> int:
    from .cli import UsageError
    from .topology import exec_in_pod, load_state
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("give a command after --")
    try:
        state = load_state(args.prefix)
        return exec_in_pod(state, args.pod, argv)
    except LookupError as e:
        raise UsageError(str(e)) from None


def cmd_probe(args) -> int:
    from .cli import _parse_ports, _parse_protocols, load
    from .probe import run_probe
    _need_root("probe")
    cluster = load(args)
    protocols = _parse_protocols(args.protocols)
    ports = _parse_ports(args.ports) if args.ports else None
    return run_probe(cluster, ports=ports, protocols=protocols, output=args.output,
                     timeout=args.timeout, mode=args.mode, prefix=args.prefix,
                     port_type=args.port_type, out=sys.stdout, pcap=args.pcap)


def add_switch_parsers(sub, common) -> None:
    up = sub.add_parser("up", help="run the soft switch: every pod a network namespace",
                        description="Build one network namespace per pod, wired to a userspace switch "
                                    "that forwards through the native pipeline, and run it in the "
                                    "foreground with a status line. Ctrl-C or SIGTERM tears everything "
                                    "down; SIGHUP re-reads the manifests and swaps the tables atomically "
                                    "(established connections survive; a bad manifest keeps the old "
                                    "tables).")
    common(up)
    up.add_argument("--port-type", choices=("veth", "tap"), default="veth")
    up.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                    help="seconds between status lines (default 1)")
    up.add_argument("--prefix", help="run name prefix (nsm + up to 5 characters; default random)")
    up.add_argument("--pcap", metavar="DIR",
                    help="record every frame that enters the switch to DIR/in.pcapng and every "
                         "frame it sends to DIR/out.pcapng (pcapng, one interface per port named "
                         "ns/pod); `netsem replay -f MANIFESTS --pcap DIR/in.pcapng --check` "
                         "re-checks the run offline")
    up.add_argument("--ring", choices=("v2", "v3"), default="v2",
                    help="AF_PACKET RX ring: v2 wakes per frame (low latency, default), v3 per block")
    up.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    up.set_defaults(func=cmd_up)

    dn = sub.add_parser("down", help="remove what soft-switch runs left behind",
                        description="Remove the namespaces, links and state files of a run (--prefix) "
                                    "or of every netsem run, including after a crash.")
    dn.add_argument("--prefix", help="only this run")
    dn.set_defaults(func=cmd_down)

    ex = sub.add_parser("exec", help="run a command inside a pod's namespace",
                        description="Run CMD inside the network namespace of pod NS/POD of a running "
                                    "`netsem up` (like kubectl exec). Exit status: the command's.")
    ex.add_argument("--prefix", help="run prefix (needed when several runs are up)")
    ex.add_argument("pod", metavar="NS/POD")
    ex.add_argument("argv", nargs="+", metavar="-- CMD")
    ex.set_defaults(func=cmd_exec)

    pr = sub.add_parser("probe", help="real connections between every pair of pods, vs the model",
                        description="Build the topology, run the switch, listen in every pod on the ports "
                                    "probed, connect every pod to every pod, and print the observed matrix "
                                    "with every cell that differs from `netsem reach` marked. Exit 1 if any "
                                    "differs.")
    common(pr)
    pr.add_argument("--ports", help="comma-separated ports (default: the ports the pods declare)")
    pr.add_argument("--protocols", default=None, help="comma-separated subset of TCP,UDP,SCTP")
    pr.add_argument("-o", "--output", choices=("table", "json"), default="table")
    pr.add_argument("--timeout", type=float, default=1.0, metavar="S",
                    help="how long a probe waits before calling it denied (default 1)")
    pr.add_argument("--mode", choices=("sockets", "packets"), default="sockets",
                    help="sockets: kernel TCP/UDP sockets (SCTP always uses crafted packets)")
    pr.add_argument("--prefix", help="run name prefix (default random)")
    pr.add_argument("--port-type", choices=("veth", "tap"), default="veth")
    pr.add_argument("--pcap", metavar="DIR", help="record the probes' frames to DIR/in.pcapng and "
                                                  "DIR/out.pcapng (as netsem up --pcap)")
    pr.set_defaults(func=cmd_probe)
