"""Minimal pcapng and classic pcap reading and writing, for replaying captures.

pcapng carries an interface name per packet (the Interface Description Block's
if_name): netsem names interfaces `ns/pod` (its eth0), `ns/pod/ifname` (its net1, ...)
or `uplink`, which gives each packet its
arrival port. Classic pcap has no interface names."""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional

LINKTYPE_ETHERNET = 1
SHB, IDB, SPB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000003, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT, IF_NAME, IF_TSRESOL, EPB_FLAGS = 0, 1, 2, 9, 2
# How `netsem up --pcap` notes, in an inbound frame's comment, the switch's verdict and
# the table generation that decided it (`netsem replay --generations` checks both).
# With offloads on, the frame's virtio-net header follows (offload=flags,gso_type,
# hdr_len,gso_size,csum_start,csum_offset); a super-frame's payload past the capture
# slot is not kept (its wire length says how long it was).
JUDGED = re.compile(r"^netsem reason=(?P<reason>[a-z0-9_]+) generation=(?P<generation>[0-9]+)"
                    r"(?: offload=(?P<offload>[0-9]+(?:,[0-9]+){5}))?$")
# epb_flags direction: the frame came in on (entered the switch from) or went out of
# the interface; Wireshark and scapy show it.
DIR_INBOUND, DIR_OUTBOUND = 1, 2
MAX_RECORD = 1 << 24          # a record larger than this is corrupt, not a packet


class PcapError(Exception):
    """A capture file netsem cannot read."""


@dataclass
class CapturedPacket:
    timestamp_ns: int
    frame: bytes
    interface: Optional[str]      # if_name, or None (classic pcap / unnamed)
    linktype: int = LINKTYPE_ETHERNET
    comment: Optional[str] = None  # the packet's opt_comment (pcapng)
    wire_len: int = 0             # its length on the wire (0: as captured)

    def judged(self) -> Optional[tuple[str, int]]:
        """(reason, generation) the recording switch noted for it, if any."""
        m = JUDGED.match(self.comment or "")
        return (m["reason"], int(m["generation"])) if m else None

    def offload(self) -> Optional[tuple]:
        """The virtio-net header the recording switch noted for it (offloads on)."""
        m = JUDGED.match(self.comment or "")
        return tuple(int(x) for x in m["offload"].split(",")) if m and m["offload"] else None

    def whole_frame(self) -> bytes:
        """The frame at its wire length: a GSO super-frame's payload that the capture
        did not keep is zeros (the pipeline reads only its headers)."""
        ol = self.offload()
        if ol and ol[1] and self.wire_len > len(self.frame):
            return self.frame + bytes(self.wire_len - len(self.frame))
        return self.frame


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for code, value in opts:
        out += struct.pack("<HH", code, len(value)) + value + b"\x00" * (_pad4(len(value)) - len(value))
    return out + struct.pack("<HH", OPT_END, 0)


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Writes a pcapng section with nanosecond timestamps."""

    def __init__(self, path_or_file):
        self._own = isinstance(path_or_file, str)
        self.f: BinaryIO = open(path_or_file, "wb") if self._own else path_or_file
        self.f.write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options([])))
        self.interfaces: dict[str, int] = {}

    def add_interface(self, name: str, snaplen: int = 65535) -> int:
        if name in self.interfaces:
            return self.interfaces[name]
        body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen) + \
            _options([(IF_NAME, name.encode()), (IF_TSRESOL, b"\x09")])
        self.f.write(_block(IDB, body))
        self.interfaces[name] = len(self.interfaces)
        return self.interfaces[name]

    def write(self, interface_id: int, timestamp_ns: int, frame: bytes, wire_len: int = 0,
              direction: int = 0, comment: Optional[str] = None) -> None:
        """wire_len: the frame's length on the wire when `frame` was cut short;
        direction: DIR_INBOUND or DIR_OUTBOUND (0: not recorded); comment: the
        packet's opt_comment (Wireshark shows it)."""
        if not 0 <= interface_id < len(self.interfaces):
            raise ValueError(f"interface {interface_id} not added")
        frame = bytes(frame)
        body = struct.pack("<IIIII", interface_id, (timestamp_ns >> 32) & 0xFFFFFFFF, timestamp_ns & 0xFFFFFFFF,
                           len(frame), max(len(frame), wire_len)) + frame + b"\x00" * (_pad4(len(frame)) - len(frame))
        opts = [(EPB_FLAGS, struct.pack("<I", direction))] if direction else []
        if comment:
            opts.append((OPT_COMMENT, comment.encode()))
        self.f.write(_block(EPB, body + _options(opts)))

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        if self._own:
            self.f.close()
        else:
            self.f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_pcap(path: str, packets: list[tuple[int, bytes]]) -> None:
    """Classic pcap, nanosecond resolution: [(timestamp_ns, frame)]."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for ts, frame in packets:
            f.write(struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000, len(frame), len(frame)) + frame)


def read_capture(path: str, stdin: Optional[BinaryIO] = None) -> Iterator[CapturedPacket]:
    """Packets of a pcap or pcapng file, or of `stdin` when path is "-". Reads straight
    through (pipes and sockets work; nothing seeks). Anything malformed or cut short is
    a PcapError naming the file, never another exception."""
    try:
        f = (stdin or sys.stdin.buffer) if path == "-" else open(path, "rb")
    except OSError as e:
        raise PcapError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        head = f.read(4)
        if len(head) < 4:
            raise PcapError(f"{path}: empty or truncated file")
        magic = struct.unpack("<I", head)[0]
        if magic == SHB:
            yield from _read_pcapng(f, path, head)
        elif magic in (0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1):
            yield from _read_pcap(f, path, head)
        else:
            raise PcapError(f"{path}: not a pcap or pcapng file (magic {magic:#010x})")
    except (struct.error, ValueError, IndexError) as e:
        raise PcapError(f"{path}: malformed capture ({e})") from None
    except OSError as e:
        raise PcapError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        if f is not stdin and path != "-":
            f.close()


def _read_exact(f: BinaryIO, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise PcapError(f"{path}: truncated {what}")
    return data


def _read_pcap(f: BinaryIO, path: str, head: bytes) -> Iterator[CapturedPacket]:
    hdr = head + _read_exact(f, 20, path, "pcap header")
    magic_le = struct.unpack("<I", hdr[:4])[0]
    e = "<" if magic_le in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic = struct.unpack(e + "I", hdr[:4])[0]
    scale = 1 if magic == 0xA1B23C4D else 1000
    linktype = struct.unpack(e + "I", hdr[20:24])[0] & 0x0FFFFFFF
    while True:
        rec = f.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise PcapError(f"{path}: truncated packet record")
        sec, frac, incl, _orig = struct.unpack(e + "IIII", rec)
        if incl > MAX_RECORD:
            raise PcapError(f"{path}: packet record of {incl} bytes (at most {MAX_RECORD})")
        data = _read_exact(f, incl, path, "packet data")
        yield CapturedPacket(sec * 1_000_000_000 + frac * scale, data, None, linktype)


def _read_pcapng(f: BinaryIO, path: str, head: bytes) -> Iterator[CapturedPacket]:
    e = "<"
    interfaces: list[tuple[int, Optional[str], int]] = []     # (linktype, name, ns per tick)
    first = True
    while True:
        block = head + _read_exact(f, 4, path, "block header") if first else f.read(8)
        first = False
        if not block:
            return
        if len(block) < 8:
            raise PcapError(f"{path}: truncated block header")
        kind = struct.unpack("<I", block[:4])[0]
        if kind == SHB:
            bom = _read_exact(f, 4, path, "section header")
            e = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
            total = struct.unpack(e + "I", block[4:8])[0]
            if total < 28 or total % 4 or total > MAX_RECORD:
                raise PcapError(f"{path}: bad section header length {total}")
            _read_exact(f, total - 12, path, "section header")
            interfaces = []
            continue
        kind, total = struct.unpack(e + "II", block)
        if total < 12 or total % 4 or total > MAX_RECORD:
            raise PcapError(f"{path}: bad block length {total}")
        body = _read_exact(f, total - 8, path, "block")[:-4]
        if kind == IDB:
            if len(body) < 8:
                raise PcapError(f"{path}: truncated interface description")
            linktype = struct.unpack(e + "H", body[:2])[0]
            name, tick = None, 1000        # default resolution: microseconds
            for code, value in _parse_options(body[8:], e):
                if code == IF_NAME:
                    name = value.rstrip(b"\x00").decode("utf-8", "replace")
                elif code == IF_TSRESOL and value:
                    r = value[0]
                    tick = (10 ** 9) // (10 ** r) if not r & 0x80 else max(1, int(1e9 / (1 << (r & 0x7F))))
            interfaces.append((linktype, name, tick))
        elif kind == EPB:
            if len(body) < 20:
                raise PcapError(f"{path}: truncated packet block")
            iface, hi, lo, cap, wire = struct.unpack(e + "IIIII", body[:20])
            if iface >= len(interfaces):
                raise PcapError(f"{path}: packet names interface {iface}, which is not described")
            if 20 + cap > len(body):
                raise PcapError(f"{path}: packet block shorter than its captured length")
            linktype, name, tick = interfaces[iface]
            comment = next((v.rstrip(b"\x00").decode("utf-8", "replace")
                            for code, v in _parse_options(body[20 + _pad4(cap):], e) if code == OPT_COMMENT), None)
            yield CapturedPacket(((hi << 32) | lo) * tick, body[20:20 + cap], name, linktype, comment, wire)
        elif kind == SPB:
            if not interfaces:
                raise PcapError(f"{path}: simple packet block before any interface")
            linktype, name, _ = interfaces[0]
            cap = min(struct.unpack(e + "I", body[:4])[0], len(body) - 4)
            yield CapturedPacket(0, body[4:4 + cap], name, linktype)


def _parse_options(data: bytes, e: str):
    i = 0
    while i + 4 <= len(data):
        code, ln = struct.unpack(e + "HH", data[i:i + 4])
        if code == OPT_END:
            return
        yield code, data[i + 4:i + 4 + ln]
        i += 4 + _pad4(ln)
