"""Policy churn under load (issue 13): through `netsem up --pcap` on real namespaces,
the policies are rewritten and SIGHUP sent every 100 ms for a minute while a TCP
stream, a UDP stream and new connections run; then the recording is checked offline
(`netsem replay --generations --check`). Prints swaps against connections and data
lost, the verdict mix the switch produced, and how long the offline check took.

    python3 bench/churn_bench.py [--seconds 60] [--period 0.1] [-o json]

Run as root (tests/switch/churn.py has the machinery)."""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.switch.churn import run_churn  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the churn lasts (default 60)")
    ap.add_argument("--period", type=float, default=0.1, help="seconds between swaps (default 0.1)")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("churn_bench: run as root (it builds namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="netsem-churn-") as tmp:
        r = run_churn(tmp, args.seconds, args.period)
    if args.output == "json":
        print(json.dumps(r, indent=1))
        return 0 if r["check_exit"] == 0 else 1
    print("| churn | swaps (generations) | TCP stream lost | UDP stream lost | new b -> d opened / refused "
          "| offline check |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| SIGHUP every {args.period * 1000:.0f} ms for {args.seconds:g} s | {r['changes']} changes, "
          f"{r['generations']} generations | {r['tcp_lost']:,} of {r['tcp_sent']:,} bytes"
          f"{' (' + r['tcp_error'] + ')' if r['tcp_error'] else ''} | {r['udp_lost']} of {r['udp_sent']:,} "
          f"| {r['opened']} / {r['refused']} | exit {r['check_exit']} in {r['check_s']:.1f} s |")
    print("\n" + "\n".join(r["check_said"]))
    return 0 if r["check_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
