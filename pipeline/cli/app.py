"""The `netsem` command line. Exit codes: 0 success, 1 a check found a difference or a
connection is denied where that is the answer asked for, 2 bad input."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..dataplane.compiler import CompileError
from ..load.errors import ManifestErrors
from .common import EXIT_BAD_INPUT, UsageError


def build_parser() -> argparse.ArgumentParser:
    from .isolation import add_isolation_parser
    from .model import add_model_parsers
    from .replay import add_replay_parser
    from .switch import add_switch_parsers
    from .watch import add_watch_parser
    parser = argparse.ArgumentParser(
        prog="netsem",
        description="Kubernetes networking semantics: what NetworkPolicies really allow, computed from "
                    "ordinary manifests by the reference model (reach, verdict, policies); every "
                    "packet's fate through the C pipeline, checked against the model (replay); and "
                    "real packets through a soft switch (up, probe, exec, down); and a live cluster's "
                    "changes in what is allowed, as they happen (watch).")
    parser.add_argument("--version", action="version", version=f"netsem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_model_parsers(sub)
    add_isolation_parser(sub)
    add_replay_parser(sub)
    add_switch_parsers(sub)
    add_watch_parser(sub)
    return parser


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:     # Ctrl-C anywhere, parsing included: no traceback
        return 130


def _main(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ManifestErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        print(f"netsem: {len(e.errors)} error(s); nothing applied", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as e:
        print(f"netsem {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CompileError as e:     # manifests the dataplane cannot carry: said, not a traceback
        print(f"netsem {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
