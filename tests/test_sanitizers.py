"""The C under AddressSanitizer and UndefinedBehaviorSanitizer (issue 13): a copy of
the tracked tree built with NETSEM_SANITIZE=address,undefined (native/build_ffi.py),
the runtimes preloaded into Python, and the tests that drive the C most run on it:
the C unit tests, the native-against-oracle differential, deltas and the tiers. Any
report aborts the run (-fno-sanitize-recover=all, abort_on_error), so it fails.
Leaks are not checked here: the interpreter's own allocations would drown them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .plant_c_bugs import _tracked_copy

TESTS = ["tests/native", "tests/test_differential.py", "tests/test_delta.py", "tests/test_cluster_wide.py"]


def _runtime(name: str) -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return ""
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else ""


def test_the_c_runs_clean_under_address_and_undefined_behavior_sanitizers(tmp_path):
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if not asan or not ubsan:
        pytest.skip("no libasan/libubsan beside the C compiler")
    tree = tmp_path / "tree"
    _tracked_copy(str(tree))
    env = dict(os.environ, NETSEM_SANITIZE="address,undefined")
    build = subprocess.run([sys.executable, "native/build_ffi.py"], cwd=tree, capture_output=True, text=True,
                           env=env)
    assert build.returncode == 0, build.stderr[-2000:]
    env.update(LD_PRELOAD=f"{asan} {ubsan}", ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1", PYTHONPATH=str(tree), NETSEM_DIFF_EXAMPLES="40")
    run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                         cwd=tree, capture_output=True, text=True, env=env, timeout=1800)
    out = run.stdout + run.stderr
    assert "AddressSanitizer" not in out and "runtime error" not in out, out[-4000:]
    assert run.returncode == 0, out[-4000:]
