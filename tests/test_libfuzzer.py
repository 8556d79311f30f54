"""libFuzzer on the C pipeline driver (issue 13; docs/testing.md, "libFuzzer on the C
pipeline"): native/fuzz/ built with clang -fsanitize=fuzzer,address,undefined, table
sets replayed from random clusters the real compiler compiled, frames from the
structure-aware mutator. A short budget runs clean, so do the inputs saved from earlier
findings, and bugs planted in a copy of the C (an out-of-bounds read in the sanity
filter, a checksum the rewrite forgets, a batch's prefetch hint taken from another
packet) are each found, and reproduce from the one input libFuzzer saved. The long
run is scripts/fuzz-long."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "native", "fuzz")
ARGS = ["-max_len=80000", "-seed=1", "-print_final_stats=1"]

# (file, text, planted text, what the harness must report)
PLANTS = [
    ("sanity.c", "if (qlen < l4 + 8)", "if (qlen < l4)", "AddressSanitizer"),
    ("rewrite.c", "            csum_replace(l4sum, port, np, 2);", "            ;",
     "invariant violated: a right L4 checksum is wrong after the rewrite"),
    ("pipeline.c", "p->likely_new[j] && p->tables ? &p->svc_h[j] : NULL;",
     "p->likely_new[j] && p->tables ? &p->svc_h[j ? j - 1 : 0] : NULL;",
     "invariant violated: disagreement"),
]


def _make(out: str, native: str, tables: str) -> None:
    r = subprocess.run(["make", "-j2", "-C", FUZZ, f"OUT={out}", f"NATIVE={native}", f"TABLES={tables}",
                        f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (shutil.which("clang") or shutil.which("clang-14")):
        pytest.skip("no clang (scripts/install.sh installs clang and libclang-rt-14-dev)")
    base = tmp_path_factory.mktemp("libfuzzer")
    out, tables = str(base / "main"), str(base / "tables")
    _make(out, os.path.join(ROOT, "native"), tables)
    return base, out, tables


def _fuzz(binary: str, workdir, *extra, timeout=300) -> subprocess.CompletedProcess:
    corpus = workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    return subprocess.run([binary, *ARGS, f"-artifact_prefix={workdir}/", *extra, str(corpus)],
                          capture_output=True, text=True, timeout=timeout, cwd=workdir)


def test_a_short_budget_runs_clean_and_reaches_every_stage(built, tmp_path):
    base, out, tables = built
    r = _fuzz(os.path.join(out, "fuzz_pipeline"), tmp_path, "-runs=4000")
    assert r.returncode == 0, r.stderr[-6000:]
    frames = int(re.search(r"netsem-fuzz: (\d+) frames in (\d+) inputs", r.stderr).group(1))
    assert frames >= 4000, r.stderr[-2000:]
    reasons = dict((k, int(v)) for k, v in re.findall(r" (\w+)=(\d+)", re.search(r"reasons:.*", r.stderr).group(0)))
    # not only the sanity filter: connections open, continue, answer, and ICMP errors relate
    for reason in ("new", "established", "reply", "related", "spoofed_source", "denied_ingress"):
        assert reasons.get(reason, 0) > 0, (reason, reasons)
    assert int(re.search(r"(\d+) rewrites checked", r.stderr).group(1)) > 0
    assert not list(tmp_path.glob("crash-*"))


def test_the_saved_regressions_run_clean(built):
    """Inputs that once found a bug (native/fuzz/regressions/, each named for it)."""
    base, out, tables = built
    saved = sorted(glob.glob(os.path.join(FUZZ, "regressions", "*")))
    assert saved
    r = subprocess.run([os.path.join(out, "fuzz_pipeline"), *saved], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-6000:]


@pytest.mark.parametrize("plant", PLANTS, ids=[p[0] for p in PLANTS])
def test_a_planted_bug_is_found_and_its_input_reproduces_it(built, tmp_path, plant):
    base, out, tables = built
    name, old, new, report = plant
    # A copy of the C with the bug planted; the unplanted objects are reused (mtimes kept).
    native = tmp_path / "native"
    native.mkdir()
    for f in os.listdir(os.path.join(ROOT, "native")):
        if f.endswith((".c", ".h")):
            shutil.copy2(os.path.join(ROOT, "native", f), native / f)
    src = (native / name).read_text()
    assert old in src, f"the planting in {name} no longer applies"
    (native / name).write_text(src.replace(old, new, 1))
    build = tmp_path / "build"
    shutil.copytree(os.path.join(out, "obj"), build / "obj")
    _make(str(build), str(native), tables)
    binary = str(build / "fuzz_pipeline")
    r = _fuzz(binary, tmp_path, "-max_total_time=60", "-runs=200000")
    assert r.returncode != 0, f"{name}: not found within the budget\n" + r.stderr[-3000:]
    assert report in r.stderr, r.stderr[-6000:]
    crashes = list(tmp_path.glob("crash-*"))
    assert len(crashes) == 1
    again = subprocess.run([binary, str(crashes[0])], capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and report in again.stderr, again.stderr[-4000:]
