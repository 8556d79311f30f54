"""cffi build script: one extension, pipeline._native, from native/*.c.

The public API is native/netsem.h, fed verbatim to cdef() and #included by
set_source, so C and Python read one definition. Run from the project root
(`python native/build_ffi.py`) to drop pipeline/_native*.so into pipeline/;
setuptools picks up `ffibuilder` through setup(cffi_modules=...).
"""
import glob
import os

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _rel(path):
    # setuptools wants sources relative to the project root (pip builds there)
    return os.path.relpath(path, os.getcwd())


ffibuilder = cffi.FFI()
for header in ["netsem.h", "switch.h"]:
    with open(os.path.join(HERE, header)) as f:
        ffibuilder.cdef(f.read())

# NETSEM_SANITIZE=address,undefined builds with those sanitizers (tests/sanitized.py
# runs the C tests so, with the runtimes preloaded into Python).
SANITIZE = os.environ.get("NETSEM_SANITIZE", "")
SAN_FLAGS = [f"-fsanitize={SANITIZE}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"] \
    if SANITIZE else []

ffibuilder.set_source(
    "pipeline._native",
    '#include "netsem.h"\n#include "switch.h"',
    sources=sorted(_rel(p) for p in glob.glob(os.path.join(HERE, "*.c"))),
    include_dirs=[_rel(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Werror", "-std=gnu11"] + SAN_FLAGS,
    extra_link_args=SAN_FLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=ROOT, verbose=True)
