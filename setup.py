"""Shim so older pip/setuptools can do editable installs; all metadata lives in setup.cfg."""
from setuptools import setup

setup()
