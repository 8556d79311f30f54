"""A SYN flood against a bounded connection tracker (issue 13, "Floods"), on real
packets through `netsem up`: an established flow between two other pods loses nothing;
connections beyond capacity are dropped and counted under their reason; the switch's
memory stays flat; with --max-connections-per-pod the other pods keep opening
connections during the flood; without it, the table recovers once the flood stops.
The figures at full rate: bench/flood_bench.py."""

import pytest

from .flood import D, Up, build_generator, connect, flood, recovery_seconds


@pytest.fixture
def gen(tmp_path):
    return build_generator(str(tmp_path))


def test_a_flood_fills_the_table_without_touching_an_established_flow_and_it_recovers(tmp_path, gen):
    up = Up(str(tmp_path), "--max-connections", "1024")
    try:
        r = flood(up, gen, 2.0, during=lambda: [connect(up, "c", D) for _ in range(3)])
        assert r["sent"] > 20_000, r
        assert r["stream_sent"] > 5_000 and r["stream_lost"] == 0, r
        assert r["conntrack_full"] > 10_000, r        # counted under its reason
        assert r["conntrack_pod_limit"] == 0, r
        assert r["rss_end_kib"] - r["rss_start_kib"] < 4096, r
        # The table recovers by itself: the flood's entries expire (a reset one in 10 s).
        r["recovery_s"] = recovery_seconds(up)
        assert r["recovery_s"] < 35, r
        print(r)
    finally:
        up.close()


def test_a_pod_limit_keeps_the_others_connecting_through_the_flood(tmp_path, gen):
    up = Up(str(tmp_path), "--max-connections", "4096", "--max-connections-per-pod", "256")
    try:
        r = flood(up, gen, 2.0, during=lambda: [connect(up, "c", D) for _ in range(20)])
        assert r["stream_lost"] == 0, r
        assert all(r["during"]), r                     # c opened every one of its connections
        assert r["conntrack_pod_limit"] > 10_000, r
        assert r["conntrack_full"] == 0, r
        assert r["rss_end_kib"] - r["rss_start_kib"] < 4096, r
    finally:
        up.close()
