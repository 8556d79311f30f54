"""Reading manifests as `kubectl apply -f` takes them and `kubectl get -o yaml` prints
them: YAML or JSON files, directories (recursively, sorted), multi-document streams,
`kind: List` and `*List` dumps, and `-` for stdin.

Loading is all-or-nothing: every document is parsed and validated first, and a
Cluster is only built when nothing was refused."""

from __future__ import annotations

import json
import re
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import yaml

# libyaml's loader when PyYAML was built with it: ~10x faster on large dumps.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from .errors import FieldErrors, ManifestError, ManifestErrors
from .kinds import PARSERS, SUPPORTED

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass
class Document:
    source: str          # file name, or "-" for stdin
    index: int           # position of the document in its file (0-based)
    body: object
    item: int | None = None   # position inside a List


@dataclass
class LoadResult:
    objects: list = field(default_factory=list)       # (Document, object) in input order
    notes: list[str] = field(default_factory=list)    # skipped kinds and similar


def expand_paths(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith(EXTENSIONS):
                        out.append(os.path.join(root, f))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise ManifestErrors([ManifestError(p, 0, "-", "no such file or directory")])
    return out


def read_documents(source: str, text: str) -> Iterator[Document]:
    """Yields documents; a syntax error is raised as a ManifestError."""
    stripped = text.lstrip()
    if source.endswith(".json") or stripped.startswith(("{", "[")):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(source, 0, "-", f"JSON syntax error at line {e.lineno} column {e.colno}: {e.msg}")
        for i, b in enumerate(body if isinstance(body, list) else [body]):
            yield Document(source, i, b)
        return
    if text.startswith(("apiVersion:", "items:", "kind:", "metadata:")) and "\nitems:\n- " in text:
        items = _list_items(source, text)
        if items is not None:
            yield from items
            return
    index = 0
    try:
        if _ALIAS.search(text):
            _check_aliasing(source, text)
        for index, body in enumerate(yaml.load_all(text, Loader=_SafeLoader)):
            if body is not None:
                yield Document(source, index, body)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(source, index, "-", f"YAML syntax error{where}: {problem}")


# An alias (*name) where YAML allows one: after a space, '[', ',', ':' or '-'.
_ALIAS = re.compile(r"(?:^|[\s\[,:-])\*[^\s,\]\[{}]")
ALIAS_EXPANSION_LIMIT = 1_000_000


def _check_aliasing(source: str, text: str) -> None:
    """Refuses a document whose aliases expand it past ALIAS_EXPANSION_LIMIT nodes and
    tenfold its size (a "billion laughs"): the objects a consumer walks would be that
    big, although the parser shares them. The API server's YAML decoder refuses such
    documents too ("excessive aliasing")."""
    for index, root in enumerate(yaml.compose_all(text, Loader=_SafeLoader)):
        if root is None:
            continue
        expanded: dict[int, int] = {}
        stack = [(root, False)]
        while stack:                                  # post-order, without recursion
            node, done = stack.pop()
            if id(node) in expanded:
                continue
            kids = [k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode) else \
                node.value if isinstance(node, yaml.SequenceNode) else []
            if not done:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if id(k) not in expanded)
                continue
            expanded[id(node)] = min(1 + sum(expanded.get(id(k), 1) for k in kids), 1 << 62)
        size = expanded[id(root)]
        if size > ALIAS_EXPANSION_LIMIT and size > 10 * len(expanded):
            raise ManifestError(source, index, "-", f"excessive aliasing: the document's {len(expanded):,} YAML "
                                                    f"nodes expand to {size:,} through aliases; refused")


def _list_items(source: str, text: str):
    """A `kubectl get -o yaml` List (one document: top-level keys at column 0, its
    items a block sequence at column 0 under `items:`) read item by item, lazily, so
    that only one item's YAML nodes exist at a time: a 100,000-object dump composed
    whole would take gigabytes, and three times as long. None when the text is not
    exactly that shape, or has aliases: the whole-document parse then decides."""
    if _ALIAS.search(text):
        return None
    lines = text.split("\n")
    header, chunks, in_items = [], [], False          # chunks: [first line, end) of each item
    for n, ln in enumerate(lines):
        if in_items:
            if ln.startswith("- "):
                if chunks:
                    chunks[-1][1] = n
                chunks.append([n, len(lines)])
                continue
            if ln.startswith("  ") or not ln.strip():
                if not chunks and ln.strip():
                    return None                       # an indented sequence: not kubectl's shape
                continue
            if chunks:                                # a top-level key ends the items
                chunks[-1][1] = n
            in_items = False
        if ln.startswith("items:"):
            if ln.strip() != "items:" or chunks:
                return None
            in_items = True
        elif ln.startswith(("#", "---", "...", "%", "-")):
            return None                               # comments, directives, a second document
        else:
            header.append(ln)
    try:
        head = yaml.load("\n".join(header), Loader=_SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(head, dict) or not str(head.get("kind", "")).endswith("List"):
        return None
    return _read_items(source, head, lines, chunks)


def _read_items(source: str, head: dict, lines: list, chunks: list) -> Iterator[Document]:
    item_kind, api = head["kind"][:-4], head.get("apiVersion")
    for i, (a, b) in enumerate(chunks):
        try:
            item = yaml.load("\n".join(ln[2:] for ln in lines[a:b]) + "\n", Loader=_SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {a + mark.line + 1}" if mark else ""
            raise ManifestError(source, 0, f"items[{i}]",
                                f"YAML syntax error{where}: {getattr(e, 'problem', None) or e}") from None
        yield Document(source, 0, _typed(item, api, item_kind), i)


def _typed(item, api, item_kind: str):
    """An item of a typed List (PodList, ...): kubectl omits its apiVersion and kind."""
    if isinstance(item, dict) and item_kind and "kind" not in item:
        return {"apiVersion": api, "kind": item_kind, **item}
    return item


def flatten(doc: Document) -> Iterator[Document]:
    """Expands `kind: List` and `*List` (PodList, NetworkPolicyList, ...) into items."""
    body = doc.body
    if isinstance(body, dict) and isinstance(body.get("kind"), str) and body["kind"].endswith("List") \
            and isinstance(body.get("items"), list):
        item_kind = body["kind"][:-4]
        api = body.get("apiVersion")
        for i, item in enumerate(body["items"]):
            yield Document(doc.source, doc.index, _typed(item, api, item_kind), i)
    else:
        yield doc


def load(paths: Iterable[str], stdin=None, texts: dict | None = None) -> LoadResult:
    """Parses every document of `paths`; raises ManifestErrors listing every problem.
    texts: when given, each file's text as read is put there by path (what a
    recording keeps of each generation: the files may change after)."""
    errors: list[ManifestError] = []
    result = LoadResult()
    for path in expand_paths(paths):
        try:
            if path == "-":
                text = (stdin or sys.stdin).read()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            errors.append(ManifestError(path, 0, "-", f"cannot read: {e}"))
            continue
        if texts is not None:
            texts[path] = text
        try:                      # lazily: a big List is parsed item by item
            _parse_all(read_documents(path, text), result, errors)
        except ManifestError as e:
            errors.append(e)
    if errors:
        raise ManifestErrors(errors)
    return result


def parse_documents(docs: Iterable[Document]) -> LoadResult:
    """Parses documents that are already objects (the API server's, a watcher's);
    raises ManifestErrors listing every problem."""
    errors: list[ManifestError] = []
    result = LoadResult()
    _parse_all(docs, result, errors)
    if errors:
        raise ManifestErrors(errors)
    return result


def _parse_all(docs: Iterable[Document], result: LoadResult, errors: list[ManifestError]) -> None:
    for doc in docs:
        for d in flatten(doc):
            _parse_document(d, result, errors)


def _parse_document(doc: Document, result: LoadResult, errors: list[ManifestError]) -> None:
    where = f"items[{doc.item}]." if doc.item is not None else ""
    fe = FieldErrors(doc.source, doc.index)
    body = doc.body
    if not isinstance(body, dict):
        fe.add(where.rstrip(".") or "-", "document must be an object")
        errors.extend(fe.errors)
        return
    api, kind = body.get("apiVersion"), body.get("kind")
    if not api:
        fe.add(f"{where}apiVersion", "Required value: apiVersion must be set")
    if not kind:
        fe.add(f"{where}kind", "Required value: kind must be set")
    if fe.errors:
        errors.extend(fe.errors)
        return
    if (api, kind) not in SUPPORTED:
        if kind in PARSERS:
            fe.add(f"{where}apiVersion", f"Unsupported value: {api!r} for kind {kind}")
            errors.extend(fe.errors)
        else:
            name = (body.get("metadata") or {}).get("name", "?") if isinstance(body.get("metadata"), dict) else "?"
            result.notes.append(f"{doc.source}:{doc.index}: skipped {kind} {name!r}: not a kind netsem models")
        return
    sub = _Prefixed(fe, where)
    obj = PARSERS[kind](body, sub)
    if fe.errors:
        errors.extend(fe.errors)
    elif obj is not None:
        # Where it came from, without its body: the raw objects of a big dump
        # (managedFields, annotations) would otherwise stay in memory to the end.
        result.objects.append((Document(doc.source, doc.index, None, doc.item), obj))


class _Prefixed:
    """FieldErrors view that prefixes field paths with items[i]. inside a List."""

    def __init__(self, inner: FieldErrors, prefix: str):
        self.inner, self.prefix = inner, prefix

    def add(self, field: str, message: str) -> None:
        self.inner.add(self.prefix + field, message)
