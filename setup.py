"""Build hooks that pyproject.toml cannot express.

- The CommP kernel is a C extension that is optional: where it cannot compile, the install still succeeds
  and the pure-Python engine answers (``ptolemy --version`` says which engine runs).
- ``ptolemy.tcss`` lives at the repository root (the design card's layout) and is copied into the package
  so that a non-editable install finds it.
"""
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # a missing compiler must not block the install
            self.warn(f"C CommP kernel not built ({exc}); the pure-Python engine will be used")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.warn(f"C CommP kernel not built ({exc}); the pure-Python engine will be used")


class BuildPyWithStylesheet(build_py):
    def run(self):
        super().run()
        src = os.path.join(HERE, "ptolemy.tcss")
        if os.path.exists(src):
            dest = os.path.join(self.build_lib, "ptolemy_tui", "ptolemy.tcss")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)


kernel_sources = ["ptolemy_tui/core/_commp.c"]
ext_modules = []
if all(os.path.exists(os.path.join(HERE, p)) for p in kernel_sources):
    ext_modules.append(
        Extension(
            "ptolemy_tui.core._commp",
            sources=kernel_sources,
            extra_compile_args=["-O3", "-std=c99"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithStylesheet})
