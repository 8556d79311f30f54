"""Bad input never crashes (issue 13, "bounded inputs"): binary garbage, bad
encodings, empty and truncated captures, directories, out-of-range arguments; each
is refused with a clear message naming what was wrong, exit code 2, no traceback."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOP = os.path.join(ROOT, "examples", "shop")


def _files(d):
    garbage = d / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 12)
    (d / "latin1.yaml").write_bytes(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n")
    (d / "empty.pcap").write_bytes(b"")
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    (d / "absurd.pcapng").write_bytes(shb + struct.pack("<II", 1, 0x7FFFFFF0) + bytes(16))
    (d / "truncated.pcapng").write_bytes(shb[:20])
    (d / "deep.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: " + "[" * 5000 + "]" * 5000 + "\n")
    return d


CASES = [
    (["reach", "-f", "{d}/garbage.bin"], "garbage.bin:0:-: cannot read"),
    (["reach", "-f", "{d}/latin1.yaml"], "latin1.yaml:0:-: cannot read"),
    (["reach", "-f", "{d}/deep.yaml"], "deep.yaml:0:"),
    (["reach", "-f", "{d}/missing.yaml"], "missing.yaml:0:-: no such file"),
    (["replay", "-f", SHOP, "--pcap", "{d}/garbage.bin"], "not a pcap or pcapng file"),
    (["replay", "-f", SHOP, "--pcap", "{d}/empty.pcap"], "empty or truncated"),
    (["replay", "-f", SHOP, "--pcap", "{d}/absurd.pcapng"], "bad block length"),
    (["replay", "-f", SHOP, "--pcap", "{d}/truncated.pcapng"], "truncated"),
    (["replay", "-f", SHOP, "--pcap", "{d}"], "cannot read"),
    (["verdict", "-f", SHOP, "--from", "shop/frontend-0", "--to", "shop/backend-0", "--port", "99999"],
     "not a port number"),
    (["isolation", "-f", SHOP, "--mode", "open", "--first-priority", "5000"], "between 0 and 1000"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:1] + a[-1:]) for a, _ in CASES])
def test_bad_input_is_refused_with_exit_2_and_no_traceback(tmp_path, args, message):
    d = _files(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *[a.format(d=d) for a in args]],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "Traceback" not in r.stderr and message in r.stderr, r.stderr[-500:]
