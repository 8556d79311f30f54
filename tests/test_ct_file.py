"""The connection table in a shared file (native/ct_store.c), what `netsem up --attach`
maps again after a crash: a second pipeline on the file of a first one that was never
closed (as after SIGKILL) takes over exactly the connections live now, with their
states, translations and per-port counts; expired, torn and duplicate entries are
dropped; the capacity is the file's; a file that is not such a table is refused."""

import errno
import os
import time

import pytest
from scapy.all import IP, TCP, UDP, raw

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath

from .conftest import cluster_from
from .packets import ether
from .test_regressions import A, B, C, PA, PB, PC, PODS

SEC = 1_000_000_000
ENTRY, HEADER = 128, 4096


def dp_on(path, attach=False, **kw):
    dp = Datapath(ct_file=str(path), attach=attach, **kw)
    dp.install(compile_cluster(cluster_from(PODS)))
    return dp


def run(dp, frame, port, now):
    return dp.run_batch([raw(frame)], [port], now)[0].reason


def tcp(src, dst, sport, flags):
    return ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags=flags)


def udp(src, dst, sport, dport=80):
    return ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport)


def test_a_second_pipeline_takes_over_what_is_live(tmp_path):
    path = tmp_path / "t.ct"
    now = time.monotonic_ns()
    first = dp_on(path, connections=64)
    # an established TCP connection, a replied UDP one, one that expired long ago,
    # one translated (as the service mapper commits), and a reset one
    assert run(first, tcp(A, B, 1000, "S"), PA, now) == "new"
    assert run(first, ether() / IP(src=B, dst=A) / TCP(sport=80, dport=1000, flags="SA"), PB, now) == "reply"
    assert run(first, tcp(A, B, 1000, "A"), PA, now) == "established"
    assert run(first, udp(A, C, 5), PA, now) == "new"
    assert run(first, udp(C, A, 80, 5), PC, now) == "reply"
    assert run(first, udp(B, C, 6), PB, now - 200 * SEC) == "new"          # expired at now - 170 s
    first.commit_translated(C, "198.19.0.9", 7, 80, 17, B, 8080, PC, now)
    assert run(first, tcp(B, C, 9, "S"), PB, now) == "new"
    assert run(first, ether() / IP(src=C, dst=B) / TCP(sport=80, dport=9, flags="R"), PC, now) == "reply"
    # and one that expires between the crash and the attach (no batch of `first` saw it expire)
    assert run(first, udp(B, A, 11), PB, now - 30 * SEC + SEC // 20) == "new"
    states = {k: first.ct_state(*k, now) for k in ((A, B, 1000, 80, 6), (A, C, 5, 80, 17), (B, C, 6, 80, 17),
                                                   (C, "198.19.0.9", 7, 80, 17), (B, C, 9, 80, 6))}
    assert states == {(A, B, 1000, 80, 6): "ESTABLISHED", (A, C, 5, 80, 17): "UDP_REPLIED",
                      (B, C, 6, 80, 17): None, (C, "198.19.0.9", 7, 80, 17): "UDP_FIRST",
                      (B, C, 9, 80, 6): "CLOSED"}

    time.sleep(0.1)
    assert first.ct_state(B, A, 11, 80, 17, now) == "UDP_FIRST"
    second = dp_on(path, attach=True)                # `first` is never closed: a crash
    assert second.adopted == 4
    assert second.connections == 4
    assert second.limits()["connections"] == 64      # the file's capacity
    for k, s in states.items():
        assert second.ct_state(*k, now) == s, k
    assert run(second, tcp(A, B, 1000, "PA"), PA, now) == "established"
    assert run(second, ether() / IP(src=B, dst=A) / TCP(sport=80, dport=1000, flags="A"), PB, now) == "reply"
    assert run(second, udp(C, A, 80, 5), PC, now) == "reply"
    assert run(second, udp(B, C, 6), PB, now) == "new"                     # expired: opened anew
    # the translated connection answers from the service address, as before the crash
    r = second.run_batch([raw(udp(B, C, 8080, 7))], [PB], now)[0]
    assert (r.reason, r.src, r.sport) == ("reply", "198.19.0.9", 80)
    assert second.ct_state(B, A, 11, 80, 17, now) is None                 # expired: not taken over
    # the free list was rebuilt (the expired entry is on it): the table fills to its
    # capacity exactly
    opened = sum(run(second, udp(A, B, 2000 + i), PA, now) == "new" for i in range(100))
    assert opened == 64 - 5
    assert run(second, udp(A, B, 3000), PA, now) == "conntrack_full"


def test_per_port_counts_are_rebuilt(tmp_path):
    path = tmp_path / "t.ct"
    now = time.monotonic_ns()
    first = dp_on(path, per_port=3)
    for sport in (1, 2):
        assert run(first, udp(A, B, sport), PA, now) == "new"
    second = dp_on(path, attach=True, per_port=3)
    assert run(second, udp(A, B, 3), PA, now) == "new"
    assert run(second, udp(A, B, 4), PA, now) == "conntrack_pod_limit"
    assert run(second, udp(B, A, 4), PB, now) == "new"


def test_torn_and_duplicate_entries_are_dropped(tmp_path):
    path = tmp_path / "t.ct"
    now = time.monotonic_ns()
    first = dp_on(path)
    for sport in (1, 2, 3):
        assert run(first, udp(A, B, sport), PA, now) == "new"
    with open(path, "r+b") as f:
        f.seek(HEADER + 0 * ENTRY + 60)              # entry 0's state byte: out of range
        f.write(bytes([200]))
        f.seek(HEADER + 1 * ENTRY)                   # entry 2 becomes a copy of entry 1's key
        key = f.read(40)
        f.seek(HEADER + 2 * ENTRY)
        f.write(key)
    second = dp_on(path, attach=True)
    assert second.adopted == 1
    assert second.ct_state(A, B, 2, 80, 17, now) == "UDP_FIRST"
    assert second.ct_state(A, B, 1, 80, 17, now) is None


def test_a_file_that_is_not_a_connection_table_is_refused(tmp_path):
    bad = tmp_path / "bad.ct"
    bad.write_bytes(b"x" * 5000)
    with pytest.raises(OSError) as e:
        Datapath(ct_file=str(bad), attach=True)
    assert e.value.errno == errno.EINVAL and "not a netsem connection table" in str(e.value)
    with pytest.raises(OSError) as e:
        Datapath(ct_file=str(tmp_path / "missing.ct"), attach=True)
    assert e.value.errno == errno.ENOENT
    good = tmp_path / "good.ct"
    Datapath(ct_file=str(good), connections=8)
    assert os.path.getsize(good) == HEADER + 8 * ENTRY
    with open(good, "r+b") as f:                     # a shorter file than its header says
        f.truncate(HEADER + 4 * ENTRY)
    with pytest.raises(OSError):
        Datapath(ct_file=str(good), attach=True)
