"""Delivery channels: where notifications go (Slack, email, a generic JSON webhook, a file).

A channel has a stable ``name`` (the outbox keys its rows on it) and one method,
``send(batch)``, which delivers a list of notifications as **one** message and returns, or
raises :class:`ChannelError` on failure. The outbox (``outbox.py``) decides what is sent when and
retries; channels hold no state and never retry on their own.

A failure is *permanent* (``ChannelError.permanent``: sending the same message again cannot
succeed — an HTTP 4xx other than 408/429, a 3xx redirect, a refused URL scheme, an SMTP 5xx reply,
a message that cannot be built or encoded) or *transient* (5xx, 408, 429, SMTP 4xx, timeouts,
connection errors, the send deadline): the outbox dead-letters the first at once and retries the
second a bounded number of times (see :func:`is_permanent`).

Every HTTP and SMTP send runs under a whole-send deadline (``$OPS_ALERT_SEND_DEADLINE_SECONDS``,
default 15 s), not only a per-read timeout: a watchdog shuts the socket down when it passes, so a
server answering a byte every few seconds cannot hold a tick. Webhook URLs must be http or https
(checked when the channels are configured and again at send); redirects are never followed.

Text that comes from data (titles, subjects, summaries, labels) is escaped for Slack (``&``,
``<``, ``>``: no ``<!channel>`` pings, no forged links) and loses its line breaks in single-line
fields (email headers, the file channel's log lines, titles), see :func:`one_line`.

Secrets (webhook URLs, which carry the token, and SMTP passwords) are read from the environment
at send time, by the environment variable's *name* given to the channel; they are never stored
on the channel, and never appear in an error message or a log line: errors name the variable
instead (``$OPS_ALERT_SLACK_WEBHOOK_URL``), see :func:`redact`.
"""

from __future__ import annotations

import html
import http.client
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable
from urllib.parse import quote, urlsplit

from orchestration.lib.alerts.notification import FIRING, JOINS, OPENS, REPORT, RESOLVED, Notification

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0  # per socket operation (connect, one read); the deadline bounds the whole send
DEFAULT_SEND_DEADLINE_S = 15.0
SEND_DEADLINE_ENV = "OPS_ALERT_SEND_DEADLINE_SECONDS"
ALLOWED_URL_SCHEMES = ("http", "https")
MAX_RESPONSE_BYTES = 64 * 1024  # what is read of a webhook's answer

SLACK_URL_ENV = "OPS_ALERT_SLACK_WEBHOOK_URL"
WEBHOOK_URL_ENV = "OPS_ALERT_WEBHOOK_URL"
SMTP_HOST_ENV = "OPS_ALERT_SMTP_HOST"
SMTP_PORT_ENV = "OPS_ALERT_SMTP_PORT"
SMTP_STARTTLS_ENV = "OPS_ALERT_SMTP_STARTTLS"
SMTP_USERNAME_ENV = "OPS_ALERT_SMTP_USERNAME"
SMTP_PASSWORD_ENV = "OPS_ALERT_SMTP_PASSWORD"
EMAIL_FROM_ENV = "OPS_ALERT_EMAIL_FROM"
EMAIL_TO_ENV = "OPS_ALERT_EMAIL_TO"
FILE_DIR_ENV = "OPS_ALERT_FILE_DIR"

SEVERITY_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
RESOLVED_ICON = ":white_check_mark:"


class ChannelError(RuntimeError):
    """A send failed. The message is already redacted (safe to store and log).

    ``permanent``: the same message can never be delivered (the outbox dead-letters it at once
    rather than retrying it)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_permanent(exc: BaseException) -> bool:
    """Whether a failed send can never succeed on retry.

    A :class:`ChannelError` says so itself. Anything else raised by a channel is a bug in building
    that message (``ValueError``, ``UnicodeError``, ``TypeError``, ``KeyError``, ...: the same
    payload fails the same way every time) — permanent — unless it is an ``OSError`` (a socket or
    a disk: transient)."""
    if isinstance(exc, ChannelError):
        return exc.permanent
    if isinstance(exc, OSError):
        return False
    return isinstance(exc, (ValueError, TypeError, KeyError, AttributeError, LookupError))


def send_deadline_s(environ: Mapping[str, str] | None = None) -> float:
    """The whole-send deadline in seconds (``$OPS_ALERT_SEND_DEADLINE_SECONDS``, default 15)."""
    env = os.environ if environ is None else environ
    raw = (env.get(SEND_DEADLINE_ENV) or "").strip()
    if not raw:
        return DEFAULT_SEND_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${SEND_DEADLINE_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"${SEND_DEADLINE_ENV}={raw!r}: must be > 0")
    return value


# line breaks (all that str.splitlines() splits on) and other control characters but tab
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")


def one_line(text: Any) -> str:
    """``text`` for a single-line field (an email header, a log line, a title): every run of
    line breaks or control characters becomes one space, so nothing can start a forged line or
    header."""
    return _LINE_BREAKS.sub(" ", str(text))


def slack_escape(text: Any) -> str:
    """Data-derived text for Slack: ``&``, ``<``, ``>`` as entities (Slack's control characters:
    ``<!channel>``, ``<@U123>``, ``<url|text>`` in data become plain text)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, text: str) -> str:
    """A ``<url|text>`` link the code itself builds: the URL's characters that would end the link
    (``|``, ``>``, ``<``, spaces) percent-encoded, ``&`` as ``&amp;``, the text escaped. A URL
    that is not http(s) is shown as escaped text instead of a link."""
    if urlsplit(url).scheme.lower() not in ALLOWED_URL_SCHEMES:
        return slack_escape(one_line(f"{text}: {url}"))
    safe = quote(one_line(url).strip(), safe="/:?#[]@!$&'()*+,;=%~-._")
    return f"<{safe.replace('&', '&amp;')}|{slack_escape(one_line(text))}>"


def check_url(url: str, env_name: str, channel: str) -> None:
    """Raise a permanent :class:`ChannelError` (naming the variable, never its value) unless
    ``url`` is an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ChannelError(f"{channel}: ${env_name} is not a valid URL", permanent=True) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_URL_SCHEMES:
        shown = one_line(scheme)[:20] or "none"
        raise ChannelError(f"{channel}: ${env_name} has the URL scheme {shown!r}; only http and https "
                           "are allowed", permanent=True)
    if not parts.hostname:
        raise ChannelError(f"{channel}: ${env_name} has no host", permanent=True)


class _Deadline:
    """A whole-operation deadline: ``watch(get_sock)`` arms a timer that shuts the socket down
    (at the file-descriptor level, so a blocked read or write in another frame returns at once)
    when ``seconds`` have passed; ``expired`` tells the caller why its read failed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        return max(0.01, self.seconds - (time.monotonic() - self.started))

    def watch(self, get_sock) -> None:
        def fire() -> None:
            with self._lock:
                if self._done:
                    return
                self.expired = True
                sock = get_sock()
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        self._timer = threading.Timer(self.remaining(), fire)
        self._timer.daemon = True
        self._timer.start()

    def __enter__(self) -> "_Deadline":
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


@runtime_checkable
class Channel(Protocol):
    name: str

    def send(self, batch: list[Notification]) -> None:
        """Deliver ``batch`` as one message; raise :class:`ChannelError` on failure."""
        ...

    def secret_envs(self) -> Sequence[str]:
        """Names of the environment variables holding this channel's secrets (for redaction)."""
        ...


# ---------------------------------------------------------------------------------------------
# secrets and redaction


def _secret_fragments(value: str) -> list[str]:
    """The value and the parts of it (a URL's path, query, password) that may show up alone."""
    frags = [value]
    if "://" in value:
        parts = urlsplit(value)
        frags += [parts.path, parts.query, parts.path + ("?" + parts.query if parts.query else "")]
        if parts.password:
            frags.append(parts.password)
    # short fragments ("/", "") would redact ordinary text: keep only ones long enough to be secret
    return sorted({f for f in frags if len(f) >= 6}, key=len, reverse=True)


def redact(text: str, env_names: Sequence[str], environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret held in ``env_names`` replaced by ``$NAME``."""
    environ = os.environ if environ is None else environ
    for name in env_names:
        value = environ.get(name)
        if not value:
            continue
        for frag in _secret_fragments(value):
            text = text.replace(frag, f"${name}")
    return text


def _require_env(name: str, channel: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ChannelError(f"{channel}: environment variable ${name} is not set")
    return value


# ---------------------------------------------------------------------------------------------
# notification helpers


def iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def notification_to_dict(n: Notification) -> dict[str, Any]:
    """A JSON-ready dict of ``n`` (timestamps as ISO 8601 UTC text)."""
    d = asdict(n)
    d["since"] = iso(n.since)
    d["at"] = iso(n.at)
    return d


def notification_from_dict(d: Mapping[str, Any]) -> Notification:
    d = dict(d)
    for key in ("since", "at"):
        d[key] = datetime.fromisoformat(str(d[key]).replace("Z", "+00:00"))
    return Notification(**d)


def _is_resolved(n: Notification) -> bool:
    return n.status == RESOLVED


def _is_report(n: Notification) -> bool:
    return n.status == REPORT


def _status_word(n: Notification) -> str:
    return "REPORT" if _is_report(n) else "RESOLVED" if _is_resolved(n) else "FIRING"


def _slack_mrkdwn(markdown: str) -> str:
    """The report summary's Markdown in Slack's dialect: ``**bold**`` → ``*bold*``, headings bold."""
    lines = []
    for line in markdown.splitlines():
        stripped = line.lstrip("#").strip()
        line = f"**{stripped}**" if line.startswith("#") and stripped else line
        lines.append(line.replace("**", "*"))
    return "\n".join(lines)


def _fmt_number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _group_title(batch: Sequence[Notification]) -> str:
    first = batch[0]
    if _is_report(first):
        return f"[REPORT] {first.title}"
    word = "RESOLVED" if all(_is_resolved(n) for n in batch) else first.severity.upper()
    more = f" (+{len(batch) - 1} more)" if len(batch) > 1 else ""
    if first.incident:  # a paging incident group: its first message, or what changed since
        if any(n.incident_role == OPENS for n in batch):
            return f"[{word}] new incident {first.incident}: {first.title}{more}"
        joined = list(dict.fromkeys(n.rule for n in batch if n.incident_role == JOINS))
        plus = f" (+rule {', +rule '.join(joined)})" if joined else ""
        return f"[{word}] update to incident {first.incident}{plus}: {first.title}{more}"
    return f"[{word}] {first.title}{more}"


def _readable_line(n: Notification) -> str:
    if _is_report(n):  # one line: the title, the period and the file; the summary is in the JSON line
        return " ".join([iso(n.at), "REPORT", n.subject, "-", n.title, f"| {iso(n.since)} to {iso(n.at)}",
                         f"| {n.labels.get('html_path', '')}"])
    nums = ", ".join(f"{k}={_fmt_number(v)}" for k, v in n.numbers.items())
    parts = [iso(n.at), _status_word(n), n.severity.upper(), n.rule, n.subject, "-", n.title,
             "|", n.summary, f"| since {iso(n.since)}"]
    if nums:
        parts.append(f"| {nums}")
    if n.asset_url:
        parts.append(f"| {n.asset_url}")
    return " ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# HTTP


def _http_failure(status: int) -> bool:
    """Whether an HTTP status is a permanent failure (4xx but 408 and 429; any 3xx)."""
    return 300 <= status < 500 and status not in (408, 429)


def _post_json(url_env: str, channel: str, body: dict[str, Any], timeout: float,
               deadline: float | None = None) -> None:
    """POST ``body`` as JSON to the URL in ``$url_env``; raise a redacted :class:`ChannelError`
    (permanent or transient, see :func:`is_permanent`) unless the answer is a 2xx.

    http.client, not urllib: it never follows a redirect and speaks only http(s). The whole send —
    connect, TLS, request, the status line and headers — must finish within ``deadline`` seconds
    (default :func:`send_deadline_s`); each socket operation also has ``timeout``."""
    secrets = [url_env]
    url = _require_env(url_env, channel)
    check_url(url, url_env, channel)
    deadline = send_deadline_s() if deadline is None else deadline
    parts = urlsplit(url)
    data = json.dumps(body).encode("utf-8")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "ops-warehouse-alerts/1"}
    where = f"{channel}: POST ${url_env}"

    def fail(text: str, permanent: bool) -> ChannelError:
        return ChannelError(redact(one_line(text), secrets)[:2000], permanent=permanent)

    status, reason, location, detail = 0, "", None, ""
    with _Deadline(deadline) as dl:
        per_op = min(timeout, dl.remaining())
        if parts.scheme.lower() == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=per_op, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=per_op)
        dl.watch(lambda: conn.sock)
        try:
            conn.request("POST", target, body=data, headers=headers)
            resp = conn.getresponse()
            status, reason = resp.status, resp.reason
            location = resp.getheader("Location")
            try:  # the answer's body: a short excerpt for errors; a 2xx stands even if it trickles
                detail = resp.read(MAX_RESPONSE_BYTES if 200 <= status < 300 else 300) \
                    .decode("utf-8", "replace").strip()[:300]
            except Exception:  # noqa: BLE001 - best effort
                detail = ""
        except Exception as e:  # noqa: BLE001 - connection errors, timeouts, the deadline: transient
            if dl.expired:
                raise fail(f"{where}: no complete answer within the send deadline of {deadline:g} s "
                           f"(${SEND_DEADLINE_ENV})", permanent=False) from None
            raise fail(f"{where} failed: {type(e).__name__}: {e}", permanent=False) from None
        finally:
            conn.close()
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        target_text = one_line(location or "no Location header")[:300]
        raise fail(f"{where} -> HTTP {status} {reason}: redirected to {target_text} "
                   "(redirects are not followed; fix the URL)", permanent=True)
    raise fail(f"{where} -> HTTP {status} {reason}" + (f": {detail}" if detail else ""),
               permanent=_http_failure(status))


# ---------------------------------------------------------------------------------------------
# channels


@dataclass
class SlackWebhookChannel:
    """A Slack incoming webhook: one Block Kit message per batch (one group_key)."""

    url_env: str = SLACK_URL_ENV
    name: str = "slack"
    timeout: float = DEFAULT_TIMEOUT_S
    deadline: float | None = None  # whole-send deadline, s (None: $OPS_ALERT_SEND_DEADLINE_SECONDS or 15)
    max_group: int = 10  # Slack allows 50 blocks per message; a notification takes up to 4

    def secret_envs(self) -> Sequence[str]:
        return [self.url_env]

    def payload(self, batch: Sequence[Notification]) -> dict[str, Any]:
        first = batch[0]
        if _is_report(first):
            return self.report_payload(first)
        resolved_all = all(_is_resolved(n) for n in batch)
        icon = RESOLVED_ICON if resolved_all else SEVERITY_ICON.get(first.severity, ":grey_question:")
        esc = slack_escape  # every data-derived text; only the markup and links built here stay live
        header = esc(one_line(_group_title(batch)))
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
        ]
        for i, n in enumerate(batch):
            if i:
                blocks.append({"type": "divider"})
            status = f"{RESOLVED_ICON} *RESOLVED*" if _is_resolved(n) else \
                f"{SEVERITY_ICON.get(n.severity, '')} *{esc(one_line(n.severity.upper()))}* (firing)"
            text = (f"{status}  *{esc(one_line(n.title))}*\n*What:* {esc(n.summary)}\n*Since:* {iso(n.since)}"
                    + (f"   *Resolved at:* {iso(n.at)}" if _is_resolved(n) else ""))
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
            if n.numbers:
                fields = [{"type": "mrkdwn", "text": f"*{esc(one_line(k))}*\n{esc(one_line(_fmt_number(v)))}"[:2000]}
                          for k, v in list(n.numbers.items())[:10]]
                blocks.append({"type": "section", "fields": fields})
            ctx = [{"type": "mrkdwn",
                    "text": f"rule `{esc(one_line(n.rule))}` · subject `{esc(one_line(n.subject))}`"}]
            if n.asset_url:
                ctx.append({"type": "mrkdwn", "text": slack_link(n.asset_url, "Open the asset")})
            blocks.append({"type": "context", "elements": ctx})
        return {"text": f"{icon} {header}", "blocks": blocks[:50]}

    def report_payload(self, n: Notification) -> dict[str, Any]:
        header = slack_escape(one_line(_group_title([n])))
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_mrkdwn(slack_escape(n.summary))[:3000]}},
        ]
        ctx = [{"type": "mrkdwn",
                "text": f"report `{slack_escape(one_line(n.subject))}` · {iso(n.since)} – {iso(n.at)}"}]
        if n.asset_url:
            ctx.append({"type": "mrkdwn", "text": slack_link(n.asset_url, "Open the report asset")})
        blocks.append({"type": "context", "elements": ctx})
        return {"text": f":bar_chart: {header}", "blocks": blocks}

    def send(self, batch: list[Notification]) -> None:
        try:
            payload = self.payload(batch)
        except Exception as e:  # noqa: BLE001 - this message cannot be built: retrying cannot help
            raise ChannelError(f"{self.name}: invalid message: {type(e).__name__}: {one_line(e)}",
                               permanent=not isinstance(e, OSError)) from None
        _post_json(self.url_env, self.name, payload, self.timeout, self.deadline)


@dataclass
class WebhookChannel:
    """A generic JSON webhook: ``{"source": "ops-warehouse", "notifications": [...]}``."""

    url_env: str = WEBHOOK_URL_ENV
    name: str = "webhook"
    timeout: float = DEFAULT_TIMEOUT_S
    deadline: float | None = None  # whole-send deadline, s (None: $OPS_ALERT_SEND_DEADLINE_SECONDS or 15)
    max_group: int = 100

    def secret_envs(self) -> Sequence[str]:
        return [self.url_env]

    def payload(self, batch: Sequence[Notification]) -> dict[str, Any]:
        return {"source": "ops-warehouse", "group_key": batch[0].group_key,
                "notifications": [notification_to_dict(n) for n in batch]}

    def send(self, batch: list[Notification]) -> None:
        try:
            payload = self.payload(batch)
        except Exception as e:  # noqa: BLE001 - this message cannot be built: retrying cannot help
            raise ChannelError(f"{self.name}: invalid message: {type(e).__name__}: {one_line(e)}",
                               permanent=not isinstance(e, OSError)) from None
        _post_json(self.url_env, self.name, payload, self.timeout, self.deadline)


@dataclass
class EmailChannel:
    """Email over SMTP: one multipart/alternative message (text + HTML) per batch."""

    host: str
    port: int
    sender: str
    recipients: list[str]
    username_env: str | None = SMTP_USERNAME_ENV
    password_env: str | None = SMTP_PASSWORD_ENV
    starttls: bool = True
    name: str = "email"
    timeout: float = DEFAULT_TIMEOUT_S
    deadline: float | None = None  # whole-send deadline, s (None: $OPS_ALERT_SEND_DEADLINE_SECONDS or 15)
    max_group: int = 50

    def secret_envs(self) -> Sequence[str]:
        return [e for e in (self.password_env,) if e]

    def message(self, batch: Sequence[Notification]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = one_line(_group_title(batch))  # a CR/LF in a title cannot forge a header
        msg["From"] = one_line(self.sender)
        msg["To"] = ", ".join(one_line(r) for r in self.recipients)
        text_parts, html_parts = [], []
        if _is_report(batch[0]):
            return self.report_message(msg, batch[0])
        for n in batch:
            nums = "\n".join(f"  {k}: {_fmt_number(v)}" for k, v in n.numbers.items())
            status = "RESOLVED" if _is_resolved(n) else f"{n.severity.upper()} (firing)"
            text_parts.append(
                f"{status}: {one_line(n.title)}\n\nWhat: {n.summary}\nSince: {iso(n.since)}\n"
                + (f"Resolved at: {iso(n.at)}\n" if _is_resolved(n) else "")
                + f"Rule: {one_line(n.rule)}  Subject: {one_line(n.subject)}\n"
                + (f"Numbers:\n{nums}\n" if nums else "")
                + (f"Asset: {n.asset_url}\n" if n.asset_url else ""))
            e = html.escape
            colour = {"critical": "#b00020", "warning": "#b26a00", "info": "#1f5fa8"}.get(n.severity, "#444")
            if _is_resolved(n):
                colour = "#2e7d32"
            rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(_fmt_number(v))}</td></tr>"
                           for k, v in n.numbers.items())
            html_parts.append(
                f'<h2 style="color:{colour}">{e(status)}: {e(n.title)}</h2>'
                f"<p><b>What:</b> {e(n.summary)}<br><b>Since:</b> {e(iso(n.since))}"
                + (f"<br><b>Resolved at:</b> {e(iso(n.at))}" if _is_resolved(n) else "")
                + f"<br><b>Rule:</b> {e(n.rule)} &middot; <b>Subject:</b> {e(n.subject)}</p>"
                + (f"<table border=\"1\" cellpadding=\"4\">{rows}</table>" if rows else "")
                + (f'<p><a href="{e(n.asset_url, quote=True)}">Open the asset</a></p>' if n.asset_url else ""))
        msg.set_content("\n----\n\n".join(text_parts))
        msg.add_alternative("<html><body>" + "<hr>".join(html_parts) + "</body></html>", subtype="html")
        return msg

    @staticmethod
    def report_message(msg: EmailMessage, n: Notification) -> EmailMessage:
        """The summary as text (and preformatted HTML); the full HTML report attached (its
        charts are inline SVG, which mail clients do not all render in a message body)."""
        msg.set_content(n.summary + (f"\n\nReport asset: {n.asset_url}\n" if n.asset_url else ""))
        msg.add_alternative(f"<html><body><pre style=\"font-family:sans-serif;white-space:pre-wrap\">"
                            f"{html.escape(n.summary)}</pre></body></html>", subtype="html")
        path = Path(n.labels.get("html_path", ""))
        if n.labels.get("html_path") and path.is_file():
            msg.add_attachment(path.read_bytes(), maintype="text", subtype="html", filename=path.name)
        return msg

    def send(self, batch: list[Notification]) -> None:
        """One SMTP session per message, all of it (connect, STARTTLS, login, DATA) within the
        send deadline. An SMTP 5xx reply, a refused recipient list or a message that cannot be
        built or encoded is permanent; 4xx replies, disconnects, timeouts and the deadline are
        transient."""
        secrets = self.secret_envs()
        where = f"{self.name}: SMTP {self.host}:{self.port}"

        def fail(text: str, permanent: bool) -> ChannelError:
            return ChannelError(redact(one_line(text), secrets)[:2000], permanent=permanent)

        try:
            msg = self.message(batch)
            msg.as_bytes()  # encodes every header and part now: an unencodable message is permanent
        except Exception as e:  # noqa: BLE001 - this message cannot be built: retrying cannot help
            # (but a report file that cannot be read right now is an I/O error: transient)
            raise fail(f"{self.name}: invalid message: {type(e).__name__}: {e}",
                       permanent=not isinstance(e, OSError)) from None
        deadline = send_deadline_s() if self.deadline is None else self.deadline
        with _Deadline(deadline) as dl:
            smtp = smtplib.SMTP(timeout=min(self.timeout, dl.remaining()))  # not connected yet
            dl.watch(lambda: smtp.sock)
            try:
                smtp.connect(self.host, self.port)
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                user = os.environ.get(self.username_env, "") if self.username_env else ""
                if user:
                    password = _require_env(self.password_env, self.name) if self.password_env else ""
                    smtp.login(user, password)
                smtp.send_message(msg)
            except ChannelError:
                raise
            except Exception as e:  # noqa: BLE001 - everything is a failed send, redacted
                if dl.expired:
                    raise fail(f"{where}: not done within the send deadline of {deadline:g} s "
                               f"(${SEND_DEADLINE_ENV})", permanent=False) from None
                raise fail(f"{where} failed: {type(e).__name__}: {e}", permanent=_smtp_permanent(e)) from None
            finally:
                try:  # the message is accepted once send_message returned: QUIT errors do not matter
                    if smtp.sock is not None and not dl.expired:
                        smtp.quit()
                except Exception:  # noqa: BLE001
                    pass
                smtp.close()


def _smtp_permanent(e: BaseException) -> bool:
    """SMTP 5xx replies (including every recipient refused) and a server that lacks a required
    extension (STARTTLS, AUTH) are permanent; 4xx replies and lost connections are not."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in e.recipients.values()]
        return bool(codes) and all(500 <= int(c) < 600 for c in codes)
    if isinstance(e, smtplib.SMTPResponseException):
        return 500 <= int(e.smtp_code) < 600
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return True
    return is_permanent(e) and not isinstance(e, smtplib.SMTPException)


@dataclass
class FileChannel:
    """Appends each notification as one JSON line to ``notifications.jsonl`` and a readable line
    to ``notifications.log`` under ``path`` (a directory); optionally echoes to stdout (demo)."""

    path: Path
    name: str = "file"
    echo: bool = False
    max_group: int = 1000

    def secret_envs(self) -> Sequence[str]:
        return []

    @property
    def jsonl_path(self) -> Path:
        return Path(self.path) / "notifications.jsonl"

    @property
    def log_path(self) -> Path:
        return Path(self.path) / "notifications.log"

    def send(self, batch: list[Notification]) -> None:
        try:
            Path(self.path).mkdir(parents=True, exist_ok=True)
            # one line per notification whatever its text holds (a CR/LF would forge a line);
            # built before anything is written, and never failing to encode (lone surrogates
            # are escaped), so a message is written whole or not at all
            lines = [one_line(_readable_line(n)) for n in batch]
            records = [json.dumps(notification_to_dict(n), sort_keys=True) for n in batch]
            with open(self.jsonl_path, "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write("".join(r + "\n" for r in records))
            with open(self.log_path, "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError as e:
            raise ChannelError(f"{self.name}: cannot write {self.path}: {e}") from None
        if self.echo:
            for line in lines:
                print(line.encode("utf-8", "backslashreplace").decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ChannelConfig:
    """Which channels are enabled, read from the environment (only variable *names* of secrets)."""

    file_dir: Path
    slack: bool = False
    webhook: bool = False
    email: dict[str, Any] | None = None
    echo: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, echo: bool = False) -> "ChannelConfig":
        from orchestration.lib.settings import DATA_DIR

        env = os.environ if environ is None else environ
        file_dir = Path(env.get(FILE_DIR_ENV) or DATA_DIR / "alerts")
        send_deadline_s(env)  # a bad value fails here, not at the first send
        for url_env, channel in ((SLACK_URL_ENV, "slack"), (WEBHOOK_URL_ENV, "webhook")):
            if env.get(url_env):
                try:
                    check_url(env[url_env].strip(), url_env, channel)
                except ChannelError as e:
                    raise ValueError(f"alert channel configuration: {e}") from None
        email = None
        if env.get(SMTP_HOST_ENV) and env.get(EMAIL_TO_ENV):
            email = {
                "host": env[SMTP_HOST_ENV],
                "port": int(env.get(SMTP_PORT_ENV) or 587),
                "sender": env.get(EMAIL_FROM_ENV) or "ops-warehouse@localhost",
                "recipients": [r.strip() for r in env[EMAIL_TO_ENV].split(",") if r.strip()],
                "starttls": (env.get(SMTP_STARTTLS_ENV) or "true").lower() not in ("0", "false", "no"),
            }
            for what in (email["host"], email["sender"], *email["recipients"]):
                if one_line(what) != what:
                    raise ValueError(f"alert channel configuration: ${SMTP_HOST_ENV}, ${EMAIL_FROM_ENV} and "
                                     f"${EMAIL_TO_ENV} must not contain line breaks or control characters")
        return cls(file_dir=file_dir, slack=bool(env.get(SLACK_URL_ENV)), webhook=bool(env.get(WEBHOOK_URL_ENV)),
                   email=email, echo=echo)

    def channels(self) -> list[Channel]:
        out: list[Channel] = [FileChannel(self.file_dir, echo=self.echo)]
        if self.slack:
            out.append(SlackWebhookChannel())
        if self.webhook:
            out.append(WebhookChannel())
        if self.email:
            out.append(EmailChannel(**self.email))
        return out

    def describe(self) -> str:
        """A loggable description (names only, never URLs or passwords)."""
        parts = [f"file:{self.file_dir}"]
        if self.slack:
            parts.append(f"slack:${SLACK_URL_ENV}")
        if self.webhook:
            parts.append(f"webhook:${WEBHOOK_URL_ENV}")
        if self.email:
            parts.append(f"email:{self.email['host']}:{self.email['port']}->{len(self.email['recipients'])} recipient(s)")
        return ", ".join(parts)


def channels_from_env(environ: Mapping[str, str] | None = None, echo: bool = False) -> list[Channel]:
    """The enabled channels: the file channel always (``DATA_DIR/alerts`` or ``$OPS_ALERT_FILE_DIR``),
    Slack if ``$OPS_ALERT_SLACK_WEBHOOK_URL`` is set, the JSON webhook if ``$OPS_ALERT_WEBHOOK_URL``
    is set, email if ``$OPS_ALERT_SMTP_HOST`` and ``$OPS_ALERT_EMAIL_TO`` are set."""
    cfg = ChannelConfig.from_env(environ, echo=echo)
    log.info("alert channels: %s", cfg.describe())
    return cfg.channels()


__all__ = [
    "FIRING", "RESOLVED", "Channel", "ChannelConfig", "ChannelError", "EmailChannel", "FileChannel",
    "SlackWebhookChannel", "WebhookChannel", "channels_from_env", "check_url", "is_permanent", "iso",
    "notification_from_dict", "notification_to_dict", "one_line", "redact", "send_deadline_s", "slack_escape",
    "slack_link",
]
