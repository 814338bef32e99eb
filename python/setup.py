"""Builds marconi._marconi with CMake (the repository's top-level CMakeLists.txt, target
_marconi only) and ships it with marconi/__init__.py. See pyproject.toml.

    pip install --no-build-isolation ./python
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.path.join(ROOT, "build-pip")
        subprocess.check_call([
            "cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            "-DMARCONI_BUILD_BENCH=OFF", "-DMARCONI_BUILD_PYTHON=ON",
            f"-DPython_EXECUTABLE={sys.executable}",
        ])
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "_marconi", "-j", jobs])
        built = os.path.join(build_dir, "python", "marconi")
        so = [f for f in os.listdir(built) if f.startswith("_marconi") and f.endswith(".so")]
        if not so:
            raise RuntimeError(f"CMake built no _marconi module in {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(built, so[0]), target)


setup(ext_modules=[Extension("marconi._marconi", sources=[])], cmdclass={"build_ext": CMakeBuild})
