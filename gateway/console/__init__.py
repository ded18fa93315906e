"""The operator console, web only: pages and a JSON API, one router per resource, over governance and storage."""

from gateway.console.app import create_app

__all__ = ["create_app"]
