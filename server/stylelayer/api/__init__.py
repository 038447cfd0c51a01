"""The local HTTP server (API v1) that runs style transfer for the plug-ins and for scripts."""

from .app import create_app

__all__ = ["create_app"]
