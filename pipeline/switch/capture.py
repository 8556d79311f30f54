"""Packet-by-packet record of a switch run (`netsem up --pcap DIR`).

Written with `pipeline.pcap.PcapngWriter`, each frame with its direction in the
Enhanced Packet Block's `epb_flags` option: inbound (1: the frame entered the switch
from this port) or outbound (2: the switch sent it on this port), which Wireshark and
scapy show.

A recording is two files, each with one Interface Description Block per switch port
whose `if_name` is the pod's `ns/pod` (`uplink` for port 0), timestamps in
nanoseconds (`if_tsresol` = 9):

  DIR/in.pcapng    every frame that entered the switch, on its arrival port, as
                   received (before the pipeline): exactly what `netsem replay -f
                   MANIFESTS --pcap DIR/in.pcapng --check` takes;
  DIR/out.pcapng   every frame the switch sent, on its departure port, as sent
                   (Ethernet rewritten, TTL decremented; proxy ARP/ND answers too):
                   what `netsem replay --write` should reproduce, minus ARP/ND.

Each inbound frame the pipeline judged carries, in its comment, the verdict and the
table generation in force: `netsem reason=new generation=3`. With manifest files
(not --kubeconfig), each generation's files are kept as they were read, under
DIR/generations/N/, and listed in DIR/generations.json, so that `netsem replay
--generations DIR --pcap DIR/in.pcapng --check` replays every frame against the
tables that judged it, and checks the switch's verdict and the oracle's against its
own (tables swapped under load: issue 13).

scapy's `rdpcap` reads both (`pkt.sniffed_on` is the interface name,
`pkt.direction` the flag).

`Recorder` drains the switch's capture ring (native/switch.c) into the file between
`ns_switch_run` slices: the C hot path only copies frames into a bounded ring and
counts `capture_dropped` when it is full, it never waits for the disk.
"""

from __future__ import annotations

import json
import os

from .._native import ffi, lib
from ..dataplane.constants import REASONS

from ..dataplane.pcap import DIR_INBOUND, DIR_OUTBOUND, PcapngWriter  # noqa: F401 (re-exported)


def _judged_comment(r) -> str:
    """An inbound frame's comment: the verdict, the table generation, and with
    offloads on its virtio-net header (what `netsem replay --generations` reads)."""
    text = f"netsem reason={REASONS[r.reason]} generation={r.generation}"
    o = r.ol
    if o.flags or o.gso_type:
        text += f" offload={o.flags},{o.gso_type},{o.hdr_len},{o.gso_size},{o.csum_start},{o.csum_offset}"
    return text


class Recorder:
    """Enables the capture ring of a `Switch` and writes what it holds to
    DIR/in.pcapng and DIR/out.pcapng each time `drain()` is called (between run
    slices, in the thread that runs the switch)."""

    def __init__(self, switch, directory: str, ring_frames: int = 8192, chunk: int = 1024):
        os.makedirs(directory, exist_ok=True)
        self.path = directory
        self.paths = {DIR_INBOUND: os.path.join(directory, "in.pcapng"),
                      DIR_OUTBOUND: os.path.join(directory, "out.pcapng")}
        if switch.workers > 1:
            raise ValueError("a recording is one switch's capture ring: --pcap needs --workers 1")
        rc = lib.ns_switch_set_capture(switch._sw, ring_frames)
        if rc:
            raise OSError(-rc, os.strerror(-rc), "ns_switch_set_capture")
        self._sw = switch
        self._w = {d: PcapngWriter(p) for d, p in self.paths.items()}
        # The same interface ids in both files, in port order, named ns/pod.
        self._if = {}
        for port, pp in sorted(switch.topo.ports.items()):
            self._add(port, pp.key)
        self._chunk = chunk
        self._recs = ffi.new("struct ns_switch_capture[]", chunk)
        self._buf = bytearray(chunk * lib.NS_SW_FRAME_MAX)
        self._cbuf = ffi.from_buffer(self._buf)
        self.frames = 0
        self._index: dict | None = None     # generations.json, once a generation is noted

    def _add(self, port: int, name: str) -> None:
        ids = {w.add_interface(name) for w in self._w.values()}
        assert len(ids) == 1
        self._if[port] = ids.pop()

    def _iface(self, port: int) -> int:
        if port not in self._if:
            self._add(port, "uplink" if port == lib.NS_PORT_UPLINK else f"port{port}")
        return self._if[port]

    def drain(self) -> int:
        """Writes everything in the capture ring; returns frames written."""
        if self._sw._sw is None:
            return 0
        total = 0
        while True:
            n = lib.ns_switch_capture_read(self._sw._sw, self._recs, self._chunk, self._cbuf, len(self._buf))
            for i in range(n):
                r = self._recs[i]
                d = DIR_INBOUND if r.dir == lib.NS_SW_CAP_IN else DIR_OUTBOUND
                judged = d == DIR_INBOUND and r.reason != lib.NS_SW_CAP_NOT_JUDGED
                self._w[d].write(self._iface(r.port), r.ts_ns, self._buf[r.off:r.off + r.len],
                                 wire_len=r.wire_len, direction=d,
                                 comment=_judged_comment(r) if judged else None)
            total += n
            if n < self._chunk:
                break
        self.frames += total
        if total:
            for w in self._w.values():
                w.flush()
        return total

    def note_generation(self, generation: int, texts: dict | None, cluster_dns: str | None) -> None:
        """The manifests (path -> text, as read; the API server's objects as one List)
        of a table generation now in force."""
        index_path = os.path.join(self.path, "generations.json")
        index = self._index or {"cluster_dns": cluster_dns, "generations": {}}
        files = None
        if texts is not None:
            d = os.path.join(self.path, "generations", str(generation))
            os.makedirs(d, exist_ok=True)
            files = []
            for i, (path, text) in enumerate(sorted(texts.items())):
                name = f"{i:03d}-{os.path.basename(path) or 'stdin'}"
                with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                    f.write(text)
                files.append(os.path.join("generations", str(generation), name))
        index["generations"][str(generation)] = files
        self._index = index
        tmp = index_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(index, f, indent=1)
        os.replace(tmp, index_path)

    def close(self) -> None:
        try:
            self.drain()
        finally:
            for w in self._w.values():
                w.close()
