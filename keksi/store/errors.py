"""The store's errors: what a caller may catch, whichever backend is underneath."""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """A write the store refused; the message says why in English (for the CLI and logs), `code` and
    `params` let `keksi.messages` say it in the admin's language."""

    def __init__(self, message: str, code: str = "refused", **params: Any):
        super().__init__(message)
        self.code, self.params = code, params


class StoreUnavailable(StoreError):
    """The database cannot take writes right now (disk full, read-only); nothing was written."""


class LastAdmin(StoreError):
    """The change would leave no enabled admin who can sign in; nothing was changed."""


class StoreBusy(StoreUnavailable):
    """The database stayed locked longer than the busy timeout; try again shortly."""
