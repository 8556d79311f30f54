"""The command line: argument parsing and rendering only; the work is below."""


def main(argv=None) -> int:
    # Imported here, not at the top: a Ctrl-C while the heavy modules load (numpy,
    # the C module, the compiler) ends the command quietly, like one later on.
    try:
        from .app import main as run
    except KeyboardInterrupt:
        return 130
    return run(argv)


__all__ = ["main"]
