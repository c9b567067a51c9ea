"""The bot's error messages with the id of the template that wrote them: ground truth for template mining.

Nobody labels the bot's real messages, but the simulator knows what it writes: every error event text is
one of the catalogue's wrappers (``cat.*_MESSAGE``) around one catalogue entry, filled by ``cat.fill``
with ids, numbers, tables and authors. ``labelled_error_messages`` writes such texts exactly as the
simulation's events do, each with its generator template id:

    tracked:<error_type>                  error_<type> events of the ErrorTracker (``TRACKED_ERRORS``)
    <post_failure|reply_failure>:<code>   the tracker's event for a failed post / reply
    <POST_FAILED|REPLY_FAILED>:<code>     the posting queue's failure event
    attempt_failed:<code>                 ``posting_attempt_failed``
    job_failed:<phase>:<error name>:<n>   ``<job>_job_execution_failed`` for the n-th ``JOB_ERRORS`` entry

What a template id leaves open is a value (a decision id, a duration, a table, the job's name); what
it names (an error type, a failure code) is part of the template. Families are drawn in proportion to
how often the simulation writes them (the tracker's rates, the failure codes' weights). The draw is
its own ``random.Random(seed)``: it never touches ``simulate``'s stream, whose output stays the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple

from orchestration.lib.simulator import catalogue as cat
from orchestration.lib.simulator.model import JOBS, uuid4_from
from orchestration.lib.simulator.posting import CONTENT, REPLIES


class LabelledMessage(NamedTuple):
    text: str
    template: str  # the generator's template id
    job_name: str | None  # the event's job (the warehouse masks it as <JOB>, see templates/api.py)


def _tracked(rng: random.Random) -> LabelledMessage:
    error = rng.choices(cat.TRACKED_ERRORS, weights=[e.per_hour for e in cat.TRACKED_ERRORS])[0]
    message = cat.fill(error.message, rng, decision=uuid4_from(rng))
    text = cat.TRACKED_EVENT_MESSAGE.format(component=error.component, error_type=error.error_type,
                                            message=message[:160])
    return LabelledMessage(text, f"tracked:{error.error_type}", None)


def _post_failure(rng: random.Random) -> LabelledMessage:
    kind = rng.choice((CONTENT, REPLIES))
    failure = rng.choices(cat.POST_FAILURES, weights=[f.weight for f in cat.POST_FAILURES])[0]
    decision = uuid4_from(rng)
    text = cat.fill(failure.message, rng, decision=decision)
    shape = rng.randrange(3)  # each failure writes three events: the queue's, the attempt's, the tracker's
    if shape == 0:
        message = cat.POST_FAILED_MESSAGE.format(event=kind.failed_event, decision=decision, code=failure.code,
                                                 ms=rng.randint(2000, 90000), text=text[:160])
        return LabelledMessage(message, f"{kind.failed_event}:{failure.code}", None)
    if shape == 1:
        message = cat.ATTEMPT_FAILED_MESSAGE.format(number=rng.randint(1, 3), decision=decision, code=failure.code)
        return LabelledMessage(message, f"attempt_failed:{failure.code}", None)
    error_type = "post_failure" if kind is CONTENT else "reply_failure"
    message = cat.TRACKED_EVENT_MESSAGE.format(component=kind.component, error_type=error_type, message=text[:160])
    return LabelledMessage(message, f"{error_type}:{failure.code}", None)


def _job_failure(rng: random.Random) -> LabelledMessage:
    job = rng.choice(JOBS)
    index = rng.randrange(len(cat.JOB_ERRORS))
    name, template, phase = cat.JOB_ERRORS[index]
    error = f"{name}: {cat.fill(template, rng)}"
    message = cat.JOB_FAILURE_MESSAGE.format(job=job.name, phase=phase, ms=rng.randint(1000, 200000),
                                             error=error[:200])
    return LabelledMessage(message, f"job_failed:{phase}:{name}:{index}", job.name)


# (family, share of the error events it writes; roughly the simulated month's mix)
_FAMILIES = ((_tracked, 0.5), (_post_failure, 0.3), (_job_failure, 0.2))


def labelled_error_messages(n: int = 3000, seed: int = 0) -> Iterator[LabelledMessage]:
    """`n` error event texts as the simulator writes them, each with its generator template id (deterministic)."""
    rng = random.Random(seed)
    makers, weights = zip(*_FAMILIES, strict=True)
    for _ in range(n):
        yield rng.choices(makers, weights=weights)[0](rng)
