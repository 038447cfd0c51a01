"""setup.cfg holds the metadata; this file adds one build step: the plug-ins' sources go into the wheel.

`stylelayer install-plugin` assembles the Krita and GIMP plug-ins from plugins/ (see stylelayer.install). A
wheel has no checkout beside it, so the build copies plugins/ into the package as `stylelayer/_plugins`. An
editable install reads plugins/ in the checkout and needs no copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PLUGINS = Path(__file__).resolve().parent / "plugins"


class BuildPyWithPlugins(build_py):
    """build_py, then plugins/ (common, krita, gimp) copied to <build>/stylelayer/_plugins."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "stylelayer" / "_plugins"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(PLUGINS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))


setup(cmdclass={"build_py": BuildPyWithPlugins})
