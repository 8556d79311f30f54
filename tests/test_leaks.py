"""No leaks and no invalid accesses in the C under valgrind (issue 13, "Hygiene"):
tests/leak_probe.py runs the pipeline's whole life through the driver three times
(tables compiled, swapped and rechecked; packets; events; the per-port limit; the
shared connection table created and attached to; everything freed). A block lost, or a
read or write out of bounds, whose stack names a native/ source file fails the test.
The interpreter's and cffi's own records (allocations at import, kept for the
process's life) are not netsem's and are not counted. (LeakSanitizer runs on the C
without Python in the libFuzzer harness, tests/test_libfuzzer.py.)"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = re.compile(r"\((?:%s)\.[ch]:\d+\)" % "|".join(
    f[:-2] for f in os.listdir(os.path.join(ROOT, "native")) if f.endswith(".c")))
BAD = re.compile(r"definitely lost|Invalid (?:read|write|free)|uninitialised|Mismatched free")


def findings(report: str) -> list[str]:
    """The valgrind records that are the C's: a leak or a bad access in native/."""
    return [r for r in re.split(r"==\d+== \n", report) if BAD.search(r) and OURS.search(r)]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_the_pipeline_lives_and_dies_without_a_leak_under_valgrind(tmp_path):
    log = tmp_path / "valgrind.log"
    r = subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=definite", f"--log-file={log}",
                        sys.executable, os.path.join(ROOT, "tests", "leak_probe.py")],
                       capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env=dict(os.environ, PYTHONMALLOC="malloc"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    report = log.read_text()
    assert "LEAK SUMMARY" in report or "no leaks are possible" in report
    bad = findings(report)
    assert not bad, "\n\n".join(bad[:3])


def test_the_filter_sees_a_leak_of_ours_and_not_the_interpreters():
    ours = ("==1== 64 bytes in 1 blocks are definitely lost in loss record 3 of 9\n"
            "==1==    at 0x48417B4: malloc (in vgpreload_memcheck-amd64-linux.so)\n"
            "==1==    by 0x1: ns_tables_new (tables.c:61)\n")
    theirs = ("==1== 104 bytes in 1 blocks are definitely lost in loss record 4 of 9\n"
              "==1==    by 0x85AE4B7: _my_Py_InitModule (in _cffi_backend.so)\n"
              "==1==    by 0x1: PyInit__native (_native.c:6072)\n")
    assert findings(ours + "==1== \n" + theirs) == [ours]
