"""The operator console: alarm queue, verification photos, police hold and export, audit trail (issue 7)."""

from gateway.console.app import create_app

__all__ = ["create_app"]
