"""Tables swapped under load (issue 13): policies added, removed and changed every
100 ms (the files and SIGHUP, or the API server that `netsem up --kubeconfig` watches)
while TCP and UDP flow through `netsem up --pcap`: no established
connection loses a byte or a datagram, and every frame the switch judged is judged the
same offline, under the table generation the recording names, by the C pipeline and
by the oracle. CI runs NETSEM_CHURN_SECONDS (default 8); bench/churn_bench.py the
minute."""

import os

import pytest

from .churn import run_churn

SECONDS = float(os.environ.get("NETSEM_CHURN_SECONDS", "8"))


@pytest.mark.parametrize("via", ["files", "api"])
def test_swaps_under_load_lose_nothing_and_every_frame_is_judged_by_its_generation(tmp_path, via):
    r = run_churn(str(tmp_path), SECONDS, via=via)
    print(r)
    assert r["tcp_error"] is None and r["tcp_lost"] == 0 and r["tcp_sent"] > 0, r
    assert r["udp_lost"] == 0 and r["udp_sent"] > 1000, r
    assert r["generations"] >= 0.8 * r["changes"], r       # nearly every change was a swap
    assert r["opened"] > 0 and r["refused"] > 0, r           # the policies in force changed verdicts
    assert r["check_exit"] == 0, r
