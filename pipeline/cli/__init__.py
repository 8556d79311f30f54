"""The command line: argument parsing and rendering only; the work is below."""

from .main import main

__all__ = ["main"]
