"""`pip install .` (not editable) gives a working netsem: the wheel is built, installed
into a fresh virtual environment with its dependencies, and `netsem replay --check`
runs the bundled capture from outside the source tree."""

import os
import shutil
import subprocess
import sys
import venv
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_installs_and_checks_a_capture(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), ROOT],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = dist.glob("netsem-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("pipeline/dataplane/oracle/pipeline.py", "pipeline/model/addresses.py",
                   "pipeline/cli/__main__.py", "pipeline/switch/up.py"):
        assert module in names, module
    assert any(n.startswith("pipeline/_native") for n in names)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "elsewhere"           # not the source tree: only the wheel can be imported
    work.mkdir()
    shutil.copytree(os.path.join(ROOT, "examples"), work / "examples")
    r = subprocess.run([str(env_dir / "bin" / "netsem"), "replay", "-f", "examples/shop", "--pcap",
                        "examples/captures/shop.pcapng", "--check", "-q"],
                       capture_output=True, text=True, cwd=work)
    assert r.returncode == 0, r.stderr
    assert "oracle agrees on all 39" in r.stderr
    r = subprocess.run([str(py), "-c", "import pipeline; print(pipeline.__file__)"], capture_output=True,
                       text=True, cwd=work)
    assert str(env_dir) in r.stdout
