"""Builds the Cython CPU backend ``optscale._fast``; everything else is in pyproject.toml.

OPTSCALE_PUREPYTHON=1 skips the extension (the package then runs on JAX or NumPy); so does a
failed compile (the extension is optional). OpenMP is used when the compiler accepts -fopenmp;
otherwise the kernels build and run serially.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup


def _openmp_flags():
    """(compile, link) flags for OpenMP if a trial compile with -fopenmp succeeds."""
    if sys.platform == "win32":
        return ["/openmp"], []
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return [], []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as fh:
            fh.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            result = subprocess.run([*cc.split(), "-fopenmp", src, "-o",
                                     os.path.join(tmp, "omp")], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return [], []
    return (["-fopenmp"], ["-fopenmp"]) if result.returncode == 0 else ([], [])


def _extensions():
    if os.environ.get("OPTSCALE_PUREPYTHON") == "1":
        return []
    from Cython.Build import cythonize

    compile_flags, link_flags = _openmp_flags()
    ext = Extension(
        "optscale._fast",
        ["optscale/_fast.pyx"],
        # no fused multiply-adds where the target has them (arm64): the fast path's kernels give
        # the same bits on one query and on several at a time only with every rounding in place
        extra_compile_args=(["-O3", "-ffp-contract=off", *compile_flags]
                            if sys.platform != "win32" else compile_flags),
        include_dirs=["optscale"],
        extra_link_args=link_flags,
        # Without a working C compiler the package still installs (JAX and NumPy backends);
        # CI asserts that the extension was built.
        optional=True,
    )
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "cdivision": True, "initializedcheck": False}
    return cythonize([ext], compiler_directives=directives)


setup(ext_modules=_extensions())
