"""What the storage layer raises when stored data cannot be used as asked."""

from __future__ import annotations


class StoreError(Exception):
    """A stored thing is missing, already there, or not what its row says (the message says which)."""
