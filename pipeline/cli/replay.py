"""`netsem replay`: a capture through the C pipeline, one line (or flow record) per
packet, optionally checked against the oracle."""

from __future__ import annotations

import json
import os
import sys

from .common import UsageError, add_manifest_args, cluster_config, load
from .render_packets import PacketRenderer


def add_replay_parser(sub) -> None:
    r = sub.add_parser(
        "replay", help="run a capture through the native pipeline (and the oracle with --check)",
        description="Run a pcap/pcapng capture through the native pipeline and print every packet's "
                    "fate: forwarded to which port, or dropped with its reason, with the deciding "
                    "policy rules and the tuple. The arrival port of a packet is its pcapng interface "
                    "name (ns/pod, or uplink for outside the cluster); classic pcap has none, so the "
                    "source address decides and anti-spoofing cannot apply. With --check the oracle "
                    "(the model, written plainly) runs alongside; exit 1 on the first disagreement. "
                    "-o jsonl prints one flow record per packet, in the shape of `netsem up --flows`.")
    add_manifest_args(r, required=False)
    r.add_argument("--generations", metavar="DIR",
                   help="a `netsem up --pcap DIR` recording made while the tables changed (SIGHUP): "
                        "replay each packet under the table generation that judged it (the manifests of "
                        "each are kept in DIR), and, with --check, hold the replay's verdict to the "
                        "switch's, noted in each packet's comment, as well as to the oracle's. Instead of -f")
    r.add_argument("--pcap", required=True, metavar="FILE", help="capture to replay (pcap or pcapng; - for stdin)")
    r.add_argument("-o", "--output", choices=("text", "jsonl"), default="text",
                   help="text: a line per packet; jsonl: a flow record per packet, the shape "
                        "`netsem up --flows` writes (default text)")
    r.add_argument("--write", metavar="OUT.pcapng",
                   help="write the forwarded packets here (translated as they leave), one interface per "
                        "output port")
    r.add_argument("--check", action="store_true", help="compare with the oracle on every packet")
    r.add_argument("--window-us", type=int, default=1000, metavar="MICROSECONDS",
                   help="packets less than this many microseconds apart share one batch and its "
                        "clock (default 1000)")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-packet lines, only the summary")
    r.add_argument("--max-connections", type=int, default=0, metavar="N",
                   help="connection tracker capacity, as `netsem up --max-connections` (default "
                        "1,048,576): give the recording switch's limits to check its capture")
    r.add_argument("--max-connections-per-pod", type=int, default=0, metavar="N",
                   help="as `netsem up --max-connections-per-pod` (default: no limit)")
    r.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    from ..dataplane.compiler import CompileError, compile_cluster
    from ..dataplane.constants import PORT_UNKNOWN
    from ..dataplane.driver import Datapath
    from ..dataplane.flows import FlowBuilder
    from ..dataplane.pcap import PcapError, PcapngWriter, read_capture
    from ..dataplane.replay import ReplayError, replay

    if bool(args.files) == bool(args.generations):
        raise UsageError("give the manifests (-f) or a recording's generations (--generations DIR), one")
    generations = None
    try:
        if args.generations:
            generations = load_generations(args.generations, cluster_config(args))
            compiled = generations[min(generations)]
        else:
            compiled = compile_cluster(load(args))
    except (CompileError, ReplayError) as e:
        raise UsageError(str(e))
    renderer = PacketRenderer(compiled)
    flows = FlowBuilder(compiled)
    for flag, v in (("--max-connections", args.max_connections),
                    ("--max-connections-per-pod", args.max_connections_per_pod)):
        if not 0 <= v <= 1 << 30:
            raise UsageError(f"{flag}: {v} is not between 1 and {1 << 30} (or 0, the default)")
    datapath = Datapath(connections=args.max_connections, per_port=args.max_connections_per_pod)
    counts: dict[str, int] = {}
    unknown = 0
    n = 0
    writer = None
    try:
        capture = read_capture(args.pcap, stdin=sys.stdin.buffer)
        writer = PcapngWriter(args.write) if args.write else None
        for rp in replay(compiled, capture, check=args.check, window_ns=max(1, args.window_us) * 1000,
                         datapath=datapath, generations=generations):
            n += 1
            r = rp.result
            counts[r.reason] = counts.get(r.reason, 0) + 1
            unknown += rp.in_port == PORT_UNKNOWN
            if not args.quiet:
                if args.output == "jsonl":
                    extra = {"index": rp.index}
                    if rp.oracle is not None:
                        extra["oracle_agrees"] = rp.agrees
                    print(json.dumps(flows.from_result(r, rp.in_port, rp.packet.timestamp_ns, extra)))
                else:
                    print(renderer.line(rp))
            if writer is not None and r.verdict == "forward":
                writer.write(writer.add_interface(renderer.port_name(r.out_port)), rp.packet.timestamp_ns,
                             datapath.rewritten(rp.packet.frame, r))
            if args.check and not rp.switch_agrees:
                print(f"netsem replay: packet {rp.index}: the switch judged it {rp.recorded} under table "
                      f"generation {rp.generation}; the replay: {renderer.describe(r)}", file=sys.stderr)
                print(f"  frame:  {rp.packet.frame.hex()}", file=sys.stderr)
                return 1
            if not rp.agrees:
                print(f"netsem replay: packet {rp.index}: the native pipeline and the oracle disagree",
                      file=sys.stderr)
                print(f"  native: {renderer.describe(r)}", file=sys.stderr)
                print(f"  oracle: {renderer.describe(rp.oracle)}", file=sys.stderr)
                print(f"  frame:  {rp.packet.frame.hex()}", file=sys.stderr)
                return 1
    except (PcapError, ReplayError) as e:
        raise UsageError(str(e))
    finally:
        if writer is not None:
            writer.close()
        datapath.close()
    if unknown:
        print(f"note: {unknown} packet(s) had no interface name (classic pcap?): their arrival port "
              f"was taken from the source address, so anti-spoofing was not applied", file=sys.stderr)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    verdict = f"; oracle agrees on all {n}" if args.check else ""
    if args.check and generations is not None:
        verdict += f", and with the switch's verdict on every packet it judged ({len(generations)} table generations)"
    print(f"{n} packet(s): {summary or 'none'}{verdict}", file=sys.stderr)
    return 0


def load_generations(directory: str, config=None) -> dict:
    """The table generations a `netsem up --pcap DIR` recording kept: each one's
    manifests loaded following the one before (so ports stay as the switch had them),
    with the recording's cluster DNS, compiled. ReplayError when the recording has
    none, or a generation came from an API server (no files were kept)."""
    from ..dataplane.compiler import compile_cluster
    from ..dataplane.replay import ReplayError
    from ..load.build import load_cluster
    from ..model.dns import add_cluster_dns
    try:
        with open(os.path.join(directory, "generations.json")) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ReplayError(f"{directory}: no readable generations.json (a `netsem up --pcap` recording "
                          f"with manifest files has one): {e}") from None
    out: dict = {}
    previous = None
    for gen, files in sorted(((int(g), f) for g, f in index.get("generations", {}).items())):
        if files is None:
            raise ReplayError(f"{directory}: generation {gen} came from an API server; its manifests "
                              "were not kept")
        cluster, _ = load_cluster([os.path.join(directory, f) for f in files], config, previous=previous)
        if index.get("cluster_dns"):
            add_cluster_dns(cluster, index["cluster_dns"])
        out[gen] = compile_cluster(cluster)
        previous = cluster
    if not out:
        raise ReplayError(f"{directory}: generations.json lists no generation")
    return out
