"""SYN flood against a bounded connection tracker, through `netsem up` on real
namespaces (issue 13, "Floods"): the generator's full rate from one pod, an established
UDP flow between two others (sequence-numbered: every lost packet counted), new
connections from a third pod during the flood, the switch's memory, and how long the
table takes to recover. Two configurations in one run: the table bounded alone, and
with a per-pod limit.

    python3 bench/flood_bench.py [--seconds 5] [-o json]

Run as root, on an otherwise idle machine; the generator and the switch are pinned
to different cores (tests/switch/flood.py has the machinery)."""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.switch.flood import D, Up, build_generator, connect, flood, recovery_seconds  # noqa: E402

CONFIGS = [("table bounded (--max-connections 4096)", ["--max-connections", "4096"]),
           ("+ --max-connections-per-pod 256", ["--max-connections", "4096", "--max-connections-per-pod", "256"])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="flood duration (default 5)")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("flood_bench: run as root (it builds namespaces)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="netsem-flood-") as tmp:
        gen = build_generator(tmp)
        for label, flags in CONFIGS:
            up = Up(tmp, *flags)
            try:
                def during():
                    return [connect(up, "c", D, timeout=0.2) for _ in range(int(args.seconds * 4))]
                r = flood(up, gen, args.seconds, during=during)
                r["others_connected"] = sum(r.pop("during"))
                r["others_tried"] = int(args.seconds * 4)
                r["recovery_s"] = recovery_seconds(up, src="a")
                r["label"] = label
                rows.append(r)
            finally:
                up.close()
    if args.output == "json":
        print(json.dumps(rows, indent=1))
        return 0
    print(f"SYN flood a -> b for {args.seconds:g} s; established UDP c -> d at 5,000/s; "
          f"new TCP c -> d every 0.25 s\n")
    print("| configuration | flood rate (sent / judged by the switch) | new / conntrack_full / conntrack_pod_limit | established flow lost "
          "| others' new connections | switch RSS start -> end | recovery (a connects again) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        judged = r['new'] + r['conntrack_full'] + r['conntrack_pod_limit']
        print(f"| {r['label']} | {r['rate'] / 1e3:,.0f} k SYN/s / {judged / r['seconds'] / 1e3:,.0f} k/s | {r['new']:,.0f} / {r['conntrack_full']:,.0f} / "
              f"{r['conntrack_pod_limit']:,.0f} | {r['stream_lost']} of {r['stream_sent']:,} | "
              f"{r['others_connected']} of {r['others_tried']} | {r['rss_start_kib'] / 1024:.1f} -> "
              f"{r['rss_end_kib'] / 1024:.1f} MiB | {r['recovery_s']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
