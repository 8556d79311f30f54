"""Rendering matrices for people (a grid) and programs (streamed JSON)."""

from __future__ import annotations

import json
from typing import IO, Iterable

from .reach import Matrix


def print_matrix_table(m: Matrix, out: IO[str]) -> None:
    """Rows are numbered sources; columns carry the same numbers, so the grid stays
    narrow however long the pod names are."""
    names = [p.key for p in m.pods]
    print(f"{m.protocol}/{m.port}  (row: from, column: to; . allowed, X denied)", file=out)
    if not names:
        print("  (no pods)", file=out)
        return
    num = len(str(len(names)))
    width = max(len(n) for n in names)
    header = " ".join(f"{j + 1:>{num}}" for j in range(len(names)))
    print(f"{'':>{num}}  {'':<{width}}  {header}", file=out)
    for i, name in enumerate(names):
        cells = " ".join(f"{'.' if a else 'X':>{num}}" for a in m.allowed[i])
        print(f"{i + 1:>{num}}  {name:<{width}}  {cells}", file=out)


def stream_matrix_json(matrices: Iterable[Matrix], out: IO[str]) -> None:
    """A JSON list of {from, to, protocol, port, allowed}, written cell by cell so a
    million-cell matrix never becomes one string."""
    out.write("[")
    first = True
    for m in matrices:
        names = [json.dumps(p.key) for p in m.pods]
        proto = json.dumps(m.protocol)
        for i, src in enumerate(names):
            row = m.allowed[i]
            chunk = []
            for j, dst in enumerate(names):
                chunk.append(f'{{"from": {src}, "to": {dst}, "protocol": {proto}, '
                             f'"port": {m.port}, "allowed": {"true" if row[j] else "false"}}}')
            if chunk:
                out.write(("\n" if first else ",\n") + ",\n".join(chunk))
                first = False
    out.write("\n]\n")
