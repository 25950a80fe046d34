"""Builds the openace Python package: the pybind11 module openace._openace is
compiled by the project's own CMake build (pybind11 cmake_example pattern).

    pip install --no-build-isolation .

CMake, a C++20 compiler, pybind11 and the C/C++ dependencies come from the
system (scripts/setup-deps), not from PyPI.  Set OPENACE_PY_BUILD_DIR to keep
one incremental CMake build directory across installs.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def read_version() -> str:
    """major.minor.patch from the three OPENACE_VERSION_* lines of the C header
    (the one place the version lives, as for CMake)."""
    header = (ROOT / "include" / "openace" / "openace.h").read_text(encoding="utf-8")
    parts = {}
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"^#define OPENACE_VERSION_{key} (\d+)\s*$", header, re.MULTILINE)
        if not m:
            raise RuntimeError(f"OPENACE_VERSION_{key} not found in include/openace/openace.h")
        parts[key] = m.group(1)
    return "{MAJOR}.{MINOR}.{PATCH}".format(**parts)


class CMakeExtension(Extension):
    """An extension built by CMake from sourcedir rather than by setuptools."""

    def __init__(self, name: str, sourcedir: str = "", target: str = "") -> None:
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())
        self.target = target or name.rpartition(".")[2]


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        # The module must land where setuptools expects the extension file.
        ext_fullpath = Path.cwd() / self.get_ext_fullpath(ext.name)
        extdir = ext_fullpath.parent.resolve()
        cfg = "Debug" if self.debug else "Release"

        build_dir = os.environ.get("OPENACE_PY_BUILD_DIR")
        build_temp = Path(build_dir) if build_dir else Path(self.build_temp) / ext.name
        build_temp = build_temp.resolve()
        build_temp.mkdir(parents=True, exist_ok=True)

        cmake_args = [
            "-DOPENACE_BUILD_PYTHON=ON",
            "-DOPENACE_BUILD_TESTS=OFF",
            "-DOPENACE_BUILD_CLI=OFF",
            "-DOPENACE_BUILD_EXAMPLES=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
        ]
        if "CMAKE_ARGS" in os.environ:
            cmake_args += [a for a in os.environ["CMAKE_ARGS"].split(" ") if a]
        # The machines this builds on are small: -j2 unless the caller says.
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")

        subprocess.run(["cmake", "-S", ext.sourcedir, "-B", str(build_temp), *cmake_args],
                       check=True)
        subprocess.run(["cmake", "--build", str(build_temp), "--target", ext.target,
                        "--config", cfg, f"-j{jobs}"], check=True)


setup(
    version=read_version(),
    packages=["openace"],
    package_dir={"": "python"},
    package_data={"openace": ["py.typed", "*.pyi"]},
    ext_modules=[CMakeExtension("openace._openace", sourcedir=str(ROOT), target="_openace")],
    cmdclass={"build_ext": CMakeBuild},
    # build/ is the C++ build directory of the repository: keep setuptools'
    # own staging (and the default CMake tree) out of it.
    options={"build": {"build_base": "build-py/setuptools"}},
    zip_safe=False,
)
