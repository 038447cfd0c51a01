"""The local HTTP server (API v1) that runs style transfer for the plug-ins and for scripts."""

from .app import create_app
from .serve import ServerThread

__all__ = ["ServerThread", "create_app"]
