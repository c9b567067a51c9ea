"""One notification: what the ledger hands to delivery for one ledger transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIRING = "firing"
RESOLVED = "resolved"
REPORT = "report"  # a scheduled report's summary, sent through the same channels


@dataclass(frozen=True)
class Notification:
    """A ledger transition to be sent.

    ``transition_id`` is unique per ledger transition (an alert firing, repeating or resolving):
    delivery never sends the same transition twice to one channel. ``group_key`` lets delivery
    put several notifications of one rule into one message.
    """

    transition_id: str
    rule: str
    subject: str
    severity: str  # info | warning | critical
    status: str  # FIRING | RESOLVED | REPORT
    title: str
    summary: str
    since: datetime
    at: datetime
    numbers: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    asset_url: str | None = None
    group_key: str | None = None
