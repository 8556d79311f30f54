"""The switch in a process of its own, pinned to one core (as it is measured): what
`netsem probe` and the benchmarks run. It runs the one switch loop (Switch.serve)
until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Optional

from .topology import Topology


def start_switch(compiled, topo: Topology, cpu: Optional[int] = None, pcap: Optional[str] = None,
                 connections: int = 0, counters: Optional[str] = None, busy_poll_us: int = 0,
                 ring_bytes: int = 0, workers: int = 1, coalesce_us: int = 0) -> int:
    """Forks the switch; returns its pid once its ports are open. connections: the
    conntrack capacity (0: the pipeline's default); counters: a file the switch writes
    its packet counters to (per reason, and the switch's own) as JSON when it stops;
    busy_poll_us, ring_bytes, workers: as Switch's (workers > 1: not pinned to one core)."""
    from .capture import Recorder
    from .switch import Switch
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:           # the switch
        code = 0
        try:
            os.close(r)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *a: stop.set())
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if cpu is not None and workers == 1:
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:
                    pass
            sw = Switch(compiled, topo, connections=connections, busy_poll_us=busy_poll_us,
                        ring_bytes=ring_bytes, workers=workers, coalesce_us=coalesce_us)
            rec = Recorder(sw, pcap) if pcap else None
            os.write(w, b"ok")
            os.close(w)
            sw.serve(stop, slice_s=0.05 if rec else 0.1, on_slice=rec.drain if rec else None)
            if rec is not None:
                rec.close()
            if counters:
                st = sw.stats()
                with open(counters, "w") as f:
                    json.dump({"reasons": {k: v for k, v in st.reasons.items() if v},
                               "switch": {k: v for k, v in st.switch.items() if v}}, f)
        except BaseException as e:    # report, never raise into the parent's code
            try:
                os.write(w, f"error {e}".encode())
            except OSError:
                pass
            code = 1
        os._exit(code)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    if msg != "ok":
        stop_switch(pid)
        raise RuntimeError(f"switch failed to start: {msg or 'died'}")
    return pid


def stop_switch(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
