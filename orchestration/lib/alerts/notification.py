"""One notification: what the ledger hands to delivery for one ledger transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIRING = "firing"
RESOLVED = "resolved"
REPORT = "report"  # a scheduled report's summary, sent through the same channels

# a paging notification's part in its incident group (``Notification.incident_role``)
OPENS = "opens"  # sent by the evaluation that opened the group: the first message of the incident
JOINS = "joins"  # an alert new to an open group: another rule (or subject) in the same incident
UPDATES = "updates"  # a repeat or the resolution of an alert already in the group


@dataclass(frozen=True)
class Notification:
    """A ledger transition to be sent.

    ``transition_id`` is unique per ledger transition (an alert firing, repeating or resolving):
    delivery never sends the same transition twice to one channel. ``group_key`` lets delivery
    put consecutive notifications of one group into one message: a paging rule's notifications
    carry their incident group's key (``incident|<incident>``), a digest rule's one per rule and
    evaluation. ``incident`` names the incident group and ``incident_role`` says whether this
    notification opens it, joins it or updates it (None outside incident groups).
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
    incident: str | None = None
    incident_role: str | None = None  # OPENS | JOINS | UPDATES
