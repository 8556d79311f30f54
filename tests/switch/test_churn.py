"""Tables swapped under load (issue 13): policies added, removed and changed every
100 ms (SIGHUP) while TCP and UDP flow through `netsem up --pcap`: no established
connection loses a byte or a datagram, and every frame the switch judged is judged the
same offline, under the table generation the recording names, by the C pipeline and
by the oracle. CI runs NETSEM_CHURN_SECONDS (default 8); bench/churn_bench.py the
minute."""

import os

from .churn import run_churn

SECONDS = float(os.environ.get("NETSEM_CHURN_SECONDS", "8"))


def test_swaps_under_load_lose_nothing_and_every_frame_is_judged_by_its_generation(tmp_path):
    r = run_churn(str(tmp_path), SECONDS)
    print(r)
    assert r["tcp_error"] is None and r["tcp_lost"] == 0 and r["tcp_sent"] > 0, r
    assert r["udp_lost"] == 0 and r["udp_sent"] > 1000, r
    assert r["generations"] >= 0.8 * r["sighups"], r       # nearly every SIGHUP was a swap
    assert r["opened"] > 0 and r["refused"] > 0, r           # the policies in force changed verdicts
    assert r["check_exit"] == 0, r
