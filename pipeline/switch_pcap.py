"""Packet-by-packet record of a switch run (`netsem up --pcap DIR`).

A minimal pcapng writer (the same calls as `pipeline.pcap.PcapngWriter`:
`add_interface(name) -> int`, `write(interface_id, timestamp_ns, frame)`), plus an
optional direction: the Enhanced Packet Block's `epb_flags` option carries inbound (1:
the frame entered the switch from this port) or outbound (2: the switch sent it on
this port), which Wireshark and scapy show.

A recording is two files, each with one Interface Description Block per switch port
whose `if_name` is the pod's `ns/pod` (`uplink` for port 0), timestamps in
nanoseconds (`if_tsresol` = 9):

  DIR/in.pcapng    every frame that entered the switch, on its arrival port, as
                   received (before the pipeline): exactly what `netsem replay -f
                   MANIFESTS --pcap DIR/in.pcapng --check` takes;
  DIR/out.pcapng   every frame the switch sent, on its departure port, as sent
                   (Ethernet rewritten, TTL decremented; proxy ARP/ND answers too):
                   what `netsem replay --write` should reproduce, minus ARP/ND.

scapy's `rdpcap` reads both (`pkt.sniffed_on` is the interface name,
`pkt.direction` the flag).

`Recorder` drains the switch's capture ring (native/switch.c) into the file between
`ns_switch_run` slices: the C hot path only copies frames into a bounded ring and
counts `capture_dropped` when it is full, it never waits for the disk.
"""

from __future__ import annotations

import os
import struct

from ._native import ffi, lib

LINKTYPE_ETHERNET = 1
DIR_INBOUND = 1
DIR_OUTBOUND = 2
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Writes a pcapng file: one section, interfaces added as frames need them."""

    def __init__(self, path: str, application: str = "netsem"):
        self._f = open(path, "wb")
        self._n_if = 0
        opts = _opt(4, application.encode()) + _opt(0, b"")     # shb_userappl, opt_endofopt
        self._f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + opts))

    def add_interface(self, name: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 0) -> int:
        opts = _opt(2, name.encode()) + _opt(9, bytes([9])) + _opt(0, b"")   # if_name, if_tsresol=ns
        self._f.write(_block(0x00000001, struct.pack("<HHI", linktype, 0, snaplen) + opts))
        self._n_if += 1
        return self._n_if - 1

    def write(self, interface_id: int, timestamp_ns: int, frame: bytes, wire_len: int = 0,
              direction: int = 0) -> None:
        if not 0 <= interface_id < self._n_if:
            raise ValueError(f"interface {interface_id} not added")
        cap = len(frame)
        body = struct.pack("<IIIII", interface_id, (timestamp_ns >> 32) & 0xFFFFFFFF,
                           timestamp_ns & 0xFFFFFFFF, cap, max(cap, wire_len))
        body += bytes(frame) + b"\0" * ((-cap) % 4)
        if direction:
            body += _opt(2, struct.pack("<I", direction)) + _opt(0, b"")   # epb_flags
        self._f.write(_block(0x00000006, body))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Recorder:
    """Enables the capture ring of a `Switch` and writes what it holds to
    DIR/in.pcapng and DIR/out.pcapng each time `drain()` is called (between run
    slices, in the thread that runs the switch)."""

    def __init__(self, switch, directory: str, ring_frames: int = 8192, chunk: int = 1024):
        os.makedirs(directory, exist_ok=True)
        self.path = directory
        self.paths = {DIR_INBOUND: os.path.join(directory, "in.pcapng"),
                      DIR_OUTBOUND: os.path.join(directory, "out.pcapng")}
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
                self._w[d].write(self._iface(r.port), r.ts_ns, self._buf[r.off:r.off + r.len],
                                 wire_len=r.wire_len, direction=d)
            total += n
            if n < self._chunk:
                break
        self.frames += total
        if total:
            for w in self._w.values():
                w.flush()
        return total

    def close(self) -> None:
        try:
            self.drain()
        finally:
            for w in self._w.values():
                w.close()
