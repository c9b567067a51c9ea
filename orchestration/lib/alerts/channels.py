"""Delivery channels: where notifications go (Slack, email, a generic JSON webhook, a file).

A channel has a stable ``name`` (the outbox keys its rows on it) and one method,
``send(batch)``, which delivers a list of notifications as **one** message and returns, or
raises :class:`ChannelError` on failure. The outbox (``outbox.py``) decides what is sent when and
retries; channels hold no state and never retry on their own.

Secrets (webhook URLs, which carry the token, and SMTP passwords) are read from the environment
at send time, by the environment variable's *name* given to the channel; they are never stored
on the channel, and never appear in an error message or a log line: errors name the variable
instead (``$OPS_ALERT_SLACK_WEBHOOK_URL``), see :func:`redact`.
"""

from __future__ import annotations

import html
import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable
from urllib.parse import urlsplit

from orchestration.lib.alerts.notification import FIRING, REPORT, RESOLVED, Notification

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0

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
    """A send failed. The message is already redacted (safe to store and log)."""


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


def _post_json(url_env: str, channel: str, body: dict[str, Any], timeout: float) -> None:
    url = _require_env(url_env, channel)
    data = json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8",
                                          "User-Agent": "ops-warehouse-alerts/1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL from config
            resp.read()
    except urllib.error.HTTPError as e:
        detail = ""
        try:
            detail = e.read(300).decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001 - best effort
            pass
        msg = f"{channel}: POST ${url_env} -> HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
        raise ChannelError(redact(msg, [url_env])) from None
    except Exception as e:  # noqa: BLE001 - URLError, timeouts, bad URLs: all redacted
        msg = f"{channel}: POST ${url_env} failed: {type(e).__name__}: {e}"
        raise ChannelError(redact(msg, [url_env])) from None


# ---------------------------------------------------------------------------------------------
# channels


@dataclass
class SlackWebhookChannel:
    """A Slack incoming webhook: one Block Kit message per batch (one group_key)."""

    url_env: str = SLACK_URL_ENV
    name: str = "slack"
    timeout: float = DEFAULT_TIMEOUT_S
    max_group: int = 10  # Slack allows 50 blocks per message; a notification takes up to 4

    def secret_envs(self) -> Sequence[str]:
        return [self.url_env]

    def payload(self, batch: Sequence[Notification]) -> dict[str, Any]:
        first = batch[0]
        if _is_report(first):
            return self.report_payload(first)
        resolved_all = all(_is_resolved(n) for n in batch)
        icon = RESOLVED_ICON if resolved_all else SEVERITY_ICON.get(first.severity, ":grey_question:")
        header = _group_title(batch)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
        ]
        for i, n in enumerate(batch):
            if i:
                blocks.append({"type": "divider"})
            status = f"{RESOLVED_ICON} *RESOLVED*" if _is_resolved(n) else \
                f"{SEVERITY_ICON.get(n.severity, '')} *{n.severity.upper()}* (firing)"
            text = (f"{status}  *{n.title}*\n*What:* {n.summary}\n*Since:* {iso(n.since)}"
                    + (f"   *Resolved at:* {iso(n.at)}" if _is_resolved(n) else ""))
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
            if n.numbers:
                fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_fmt_number(v)}"[:2000]}
                          for k, v in list(n.numbers.items())[:10]]
                blocks.append({"type": "section", "fields": fields})
            ctx = [{"type": "mrkdwn", "text": f"rule `{n.rule}` · subject `{n.subject}`"}]
            if n.asset_url:
                ctx.append({"type": "mrkdwn", "text": f"<{n.asset_url}|Open the asset>"})
            blocks.append({"type": "context", "elements": ctx})
        return {"text": f"{icon} {header}", "blocks": blocks[:50]}

    def report_payload(self, n: Notification) -> dict[str, Any]:
        header = _group_title([n])
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_mrkdwn(n.summary)[:3000]}},
        ]
        ctx = [{"type": "mrkdwn", "text": f"report `{n.subject}` · {iso(n.since)} – {iso(n.at)}"}]
        if n.asset_url:
            ctx.append({"type": "mrkdwn", "text": f"<{n.asset_url}|Open the report asset>"})
        blocks.append({"type": "context", "elements": ctx})
        return {"text": f":bar_chart: {header}", "blocks": blocks}

    def send(self, batch: list[Notification]) -> None:
        _post_json(self.url_env, self.name, self.payload(batch), self.timeout)


@dataclass
class WebhookChannel:
    """A generic JSON webhook: ``{"source": "ops-warehouse", "notifications": [...]}``."""

    url_env: str = WEBHOOK_URL_ENV
    name: str = "webhook"
    timeout: float = DEFAULT_TIMEOUT_S
    max_group: int = 100

    def secret_envs(self) -> Sequence[str]:
        return [self.url_env]

    def payload(self, batch: Sequence[Notification]) -> dict[str, Any]:
        return {"source": "ops-warehouse", "group_key": batch[0].group_key,
                "notifications": [notification_to_dict(n) for n in batch]}

    def send(self, batch: list[Notification]) -> None:
        _post_json(self.url_env, self.name, self.payload(batch), self.timeout)


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
    max_group: int = 50

    def secret_envs(self) -> Sequence[str]:
        return [e for e in (self.password_env,) if e]

    def message(self, batch: Sequence[Notification]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = _group_title(batch)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        text_parts, html_parts = [], []
        if _is_report(batch[0]):
            return self.report_message(msg, batch[0])
        for n in batch:
            nums = "\n".join(f"  {k}: {_fmt_number(v)}" for k, v in n.numbers.items())
            status = "RESOLVED" if _is_resolved(n) else f"{n.severity.upper()} (firing)"
            text_parts.append(
                f"{status}: {n.title}\n\nWhat: {n.summary}\nSince: {iso(n.since)}\n"
                + (f"Resolved at: {iso(n.at)}\n" if _is_resolved(n) else "")
                + f"Rule: {n.rule}  Subject: {n.subject}\n"
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
        msg = self.message(batch)
        secrets = self.secret_envs()
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
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
            msg_text = f"{self.name}: SMTP {self.host}:{self.port} failed: {type(e).__name__}: {e}"
            raise ChannelError(redact(msg_text, secrets)) from None


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
            lines = [_readable_line(n) for n in batch]
            with open(self.jsonl_path, "a", encoding="utf-8") as f:
                for n in batch:
                    f.write(json.dumps(notification_to_dict(n), sort_keys=True) + "\n")
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError as e:
            raise ChannelError(f"{self.name}: cannot write {self.path}: {e}") from None
        if self.echo:
            for line in lines:
                print(line)


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
        email = None
        if env.get(SMTP_HOST_ENV) and env.get(EMAIL_TO_ENV):
            email = {
                "host": env[SMTP_HOST_ENV],
                "port": int(env.get(SMTP_PORT_ENV) or 587),
                "sender": env.get(EMAIL_FROM_ENV) or "ops-warehouse@localhost",
                "recipients": [r.strip() for r in env[EMAIL_TO_ENV].split(",") if r.strip()],
                "starttls": (env.get(SMTP_STARTTLS_ENV) or "true").lower() not in ("0", "false", "no"),
            }
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
    "SlackWebhookChannel", "WebhookChannel", "channels_from_env", "iso", "notification_from_dict",
    "notification_to_dict", "redact",
]
