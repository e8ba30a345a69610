"""A visitor's request to erase their consent records: find them by an id they quote, then erase.

The CLI (`flask consents erase`) and legal's page in the admin both go through here. No request
objects: callers pass the store and the id.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from . import consents
from .consents import HEX32
from .store import Store

KINDS = ("consent", "subject")


class NotFound(LookupError):
    """No records match the id: `reason` is "invalid" (not an id at all) or "unknown" (none, or erased)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def find_subject(store: Store, kind: str, given: str) -> tuple[str, dict[str, Any]]:
    """The subject id behind a quoted consent id or subject id, with what erasing it would remove."""
    given = given.strip().lower()
    if kind not in KINDS or not HEX32.match(given):
        raise NotFound("invalid")
    subject_id = given
    if kind == "consent":
        row = store.consent(given)
        if row is None:
            raise NotFound("unknown")
        subject_id = row["subject_id"]
    summary = store.subject_summary(subject_id)
    if not summary["records"]:
        raise NotFound("unknown")
    return subject_id, summary


def erase(store: Store, kind: str, given: str, actor: str, zone: tzinfo) -> int:
    """Erase every record of the visitor found by `given` (`zone` dates the figures it takes out);
    the audit log keeps only the count."""
    return consents.erase(store, find_subject(store, kind, given)[0], actor, zone)
