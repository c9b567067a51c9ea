"""Alert delivery: the outbox and the channels, against real local servers (no mocks).

An HTTP server (http.server in a thread) that fails the first N requests with 500 stands in for
Slack and a generic webhook; aiosmtpd is a real SMTP server. The outbox runs on DuckDB and on
PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestration.lib.alerts.channels import (
    ChannelConfig,
    ChannelError,
    EmailChannel,
    FileChannel,
    SlackWebhookChannel,
    WebhookChannel,
    channels_from_env,
)
from orchestration.lib.alerts.notification import FIRING, RESOLVED, Notification
from orchestration.lib.alerts.outbox import Backoff, deliver, enqueue, outbox_rows
from orchestration.lib.settings import Location

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)
TOKEN = "T0KEN-xoxb-very-secret-4242"
SLACK_ENV = "OPS_TEST_SLACK_URL"
HOOK_ENV = "OPS_TEST_HOOK_URL"


# ---------------------------------------------------------------------------------------------
# a local HTTP server failing the first N requests


class FlakyServer:
    """Records every request; answers 500 (echoing the path, as nasty servers do) while
    ``fail_remaining`` > 0, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_remaining = fail_first
        self.requests: list[tuple[str, dict, int]] = []  # (path, json body, status)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    status = 500 if outer.fail_remaining > 0 else 200
                    if status == 500:
                        outer.fail_remaining -= 1
                    outer.requests.append((self.path, body, status))
                reply = (f"boom at {self.path}" if status == 500 else "ok").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def received(self, prefix: str) -> list[dict]:
        """Bodies accepted (200) at paths starting with ``prefix``."""
        with self.lock:
            return [b for p, b, s in self.requests if p.startswith(prefix) and s == 200]

    def attempts(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for p, _, _ in self.requests if p.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    servers: list[FlakyServer] = []

    def make(fail_first: int = 0) -> FlakyServer:
        servers.append(FlakyServer(fail_first))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture(params=["duckdb", "postgres"])
def location(request, tmp_path) -> Location:
    if request.param == "duckdb":
        return Location.parse(str(tmp_path / "warehouse.duckdb"))
    return Location.parse(request.getfixturevalue("pg_databases").new("wh"))


@pytest.fixture
def web_channels(http_server, monkeypatch):
    server = http_server()
    monkeypatch.setenv(SLACK_ENV, f"{server.url}/slack/services/{TOKEN}")
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}?key={TOKEN}")
    return server, [SlackWebhookChannel(url_env=SLACK_ENV, timeout=5), WebhookChannel(url_env=HOOK_ENV, timeout=5)]


def note(tid: str, *, group: str | None = None, status: str = FIRING, severity: str = "critical",
         at: datetime = T0, title: str = "Error rate spike") -> Notification:
    return Notification(
        transition_id=tid, rule="error_rate", subject=f"subject-{tid}", severity=severity, status=status,
        title=title, summary=f"errors at 5x baseline ({tid})", since=T0 - timedelta(minutes=20), at=at,
        numbers={"errors_last_hour": 120, "baseline": 24.5}, labels={"service": "poster"},
        asset_url="http://127.0.0.1:3000/assets/marts/mart_anomalies", group_key=group)


def ids_in(bodies: list[dict], kind: str) -> list[list[str]]:
    """The transition ids of each accepted message, per message."""
    if kind == "hook":
        return [[n["transition_id"] for n in b["notifications"]] for b in bodies]
    out = []
    for b in bodies:  # slack: the transition id is in the summary "(tid)"
        texts = [blk["text"]["text"] for blk in b["blocks"] if blk["type"] == "section" and "text" in blk]
        out.append([t.rsplit("(", 1)[1].split(")")[0] for t in texts])
    return out


# ---------------------------------------------------------------------------------------------
# outbox: outage, backlog, order, exactly-once


def test_channel_down_for_an_hour_gets_backlog_once_in_order(location, web_channels):
    server, channels = web_channels
    server.fail_remaining = 10**6  # down
    backoff = Backoff(base_s=30, factor=2, cap_s=600)
    enqueued: list[str] = []
    now = T0
    for tick in range(12):  # one tick every 5 minutes for an hour, the channel down throughout
        now = T0 + timedelta(minutes=5 * tick)
        batch = [note(f"t{tick:02d}a", group=f"g{tick % 3}"), note(f"t{tick:02d}b", group=f"g{tick % 3}")]
        if tick % 4 == 0:
            batch.append(note(f"t{tick:02d}c", group=None))
        enqueue(location, batch, channels, now)
        enqueued += [n.transition_id for n in batch]
        summary = deliver(location, channels, now, backoff=backoff)
        assert summary.sent == 0
        assert summary.channels["slack"].pending == len(enqueued)
    during_outage = server.attempts("/slack")
    assert 1 <= during_outage < 12  # backoff: fewer attempts than ticks
    rows = outbox_rows(location, "slack")
    head = rows[0]
    assert head["attempts"] == during_outage and head["last_error"] and "HTTP 500" in head["last_error"]
    assert all(r["attempts"] == 0 for r in rows if r["group_key"] != head["group_key"])

    # the channel comes back; the next tick that is due delivers everything, once, in order
    server.fail_remaining = 0
    now = now + timedelta(seconds=1)
    summary = deliver(location, channels, now, backoff=backoff)
    if summary.sent == 0:  # not due yet: the capped backoff decides when the retry happens
        assert summary.channels["slack"].skipped_until is not None
        now = summary.channels["slack"].skipped_until
        summary = deliver(location, channels, now, backoff=backoff)
    assert summary.channels["slack"].sent == len(enqueued)
    assert summary.channels["webhook"].sent == len(enqueued)
    assert summary.pending == 0 and summary.failed == 0

    for prefix, kind in (("/slack", "slack"), ("/hook", "hook")):
        messages = ids_in(server.received(prefix), kind)
        assert [t for m in messages for t in m] == enqueued  # every one, once, in enqueue order
        # consecutive notifications of one group go in one message (each tick's a/b pair; the
        # ticks' groups alternate), ungrouped ones alone
        expected = []
        for i in range(12):
            expected.append([f"t{i:02d}a", f"t{i:02d}b"])
            if i % 4 == 0:
                expected.append([f"t{i:02d}c"])
        assert messages == expected

    # later ticks send nothing more
    before = len(server.requests)
    enqueue(location, [note("t00a", group="g0")], channels, now)
    assert deliver(location, channels, now + timedelta(hours=1), backoff=backoff).sent == 0
    assert len(server.requests) == before
    assert all(r["delivered_at"] is not None for r in outbox_rows(location))


def test_fails_first_n_then_backs_off_and_delivers(location, http_server, monkeypatch):
    server = http_server(fail_first=2)
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
    ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5)]
    backoff = Backoff(base_s=30, factor=2, cap_s=600)
    enqueue(location, [note("x1"), note("x2")], ch, T0)

    s = deliver(location, ch, T0, backoff=backoff)  # attempt 1 fails -> due at +30 s
    assert (s.channels["webhook"].failed, s.channels["webhook"].sent) == (1, 0)
    assert outbox_rows(location)[0]["next_attempt_at"] == T0 + timedelta(seconds=30)
    s = deliver(location, ch, T0 + timedelta(seconds=10), backoff=backoff)  # not due: no request
    assert s.channels["webhook"].skipped_until == T0 + timedelta(seconds=30)
    assert server.attempts("/hook") == 1
    s = deliver(location, ch, T0 + timedelta(seconds=30), backoff=backoff)  # attempt 2 fails -> +60 s
    assert s.channels["webhook"].failed == 1
    assert outbox_rows(location)[0]["next_attempt_at"] == T0 + timedelta(seconds=90)
    s = deliver(location, ch, T0 + timedelta(seconds=90), backoff=backoff)
    assert s.channels["webhook"].sent == 2 and s.channels["webhook"].pending == 0
    assert [ids for ids in ids_in(server.received("/hook"), "hook")] == [["x1"], ["x2"]]
    rows = outbox_rows(location)
    assert [r["attempts"] for r in rows] == [3, 1]
    assert all(r["delivered_at"] == T0 + timedelta(seconds=90) for r in rows)


def test_retried_tick_sends_nothing_twice(location, web_channels):
    server, channels = web_channels
    tick = [note("r1", group="g"), note("r2", group="g"), note("r3")]
    for attempt in range(2):  # the same sensor tick run twice (Dagster retried it)
        assert enqueue(location, tick, channels, T0) == (6 if attempt == 0 else 0)
        deliver(location, channels, T0)
    # and a retry of a tick that died after enqueue, before deliver
    enqueue(location, tick, channels, T0 + timedelta(minutes=1))
    deliver(location, channels, T0 + timedelta(minutes=1))
    assert ids_in(server.received("/slack"), "slack") == [["r1", "r2"], ["r3"]]
    assert ids_in(server.received("/hook"), "hook") == [["r1", "r2"], ["r3"]]
    assert len(server.requests) == 4
    assert len(outbox_rows(location)) == 6


def test_a_rule_routing_sends_only_to_its_channels(location, web_channels):
    server, channels = web_channels
    routed = replace(note("only-hook"), labels={"service": "poster", "channels": "webhook, pager"})
    assert enqueue(location, [routed, note("everywhere")], channels, T0) == 3
    deliver(location, channels, T0)
    assert [r["transition_id"] for r in outbox_rows(location, "slack")] == ["everywhere"]
    assert ids_in(server.received("/slack"), "slack") == [["everywhere"]]
    assert ids_in(server.received("/hook"), "hook") == [["only-hook"], ["everywhere"]]


def test_one_channel_down_does_not_hold_up_another(location, http_server, monkeypatch):
    up, down = http_server(), http_server(fail_first=10**6)
    monkeypatch.setenv(SLACK_ENV, f"{down.url}/slack/{TOKEN}")
    monkeypatch.setenv(HOOK_ENV, f"{up.url}/hook/{TOKEN}")
    channels = [SlackWebhookChannel(url_env=SLACK_ENV), WebhookChannel(url_env=HOOK_ENV)]
    enqueue(location, [note("o1"), note("o2")], channels, T0)
    s = deliver(location, channels, T0)
    assert s.channels["slack"].failed == 1 and s.channels["slack"].pending == 2
    assert s.channels["webhook"].sent == 2 and s.channels["webhook"].pending == 0
    assert down.attempts("/slack") == 1  # stopped at the first failure: o2 waits behind o1


# ---------------------------------------------------------------------------------------------
# channel payloads


def test_slack_block_kit_payload(http_server, monkeypatch):
    server = http_server()
    monkeypatch.setenv(SLACK_ENV, f"{server.url}/slack/{TOKEN}")
    ch = SlackWebhookChannel(url_env=SLACK_ENV)
    ch.send([note("s1", group="g"), note("s2", group="g")])
    ch.send([note("s3", status=RESOLVED, at=T0 + timedelta(hours=1))])
    first, resolved = server.received("/slack")
    header = first["blocks"][0]
    assert header["type"] == "header"
    assert "CRITICAL" in header["text"]["text"] and "Error rate spike" in header["text"]["text"]
    assert "+1 more" in header["text"]["text"]
    sections = [b for b in first["blocks"] if b["type"] == "section" and "text" in b]
    assert len(sections) == 2  # both notifications of the group in one message
    assert "*What:* errors at 5x baseline (s1)" in sections[0]["text"]["text"]
    assert "*Since:* 2026-09-01T11:40:00Z" in sections[0]["text"]["text"]
    fields = [f["text"] for b in first["blocks"] if "fields" in b for f in b["fields"]]
    assert "*errors_last_hour*\n120" in fields and "*baseline*\n24.5" in fields
    links = [e["text"] for b in first["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert "<http://127.0.0.1:3000/assets/marts/mart_anomalies|Open the asset>" in links
    assert "text" in first  # notification fallback text
    assert "RESOLVED" in resolved["blocks"][0]["text"]["text"]
    assert ":white_check_mark: *RESOLVED*" in resolved["blocks"][1]["text"]["text"]
    assert "Resolved at:* 2026-09-01T13:00:00Z" in resolved["blocks"][1]["text"]["text"]


def test_generic_webhook_payload(http_server, monkeypatch):
    server = http_server()
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
    WebhookChannel(url_env=HOOK_ENV).send([note("w1", group="g")])
    (body,) = server.received("/hook")
    (n,) = body["notifications"]
    assert n["transition_id"] == "w1" and n["since"] == "2026-09-01T11:40:00Z" and n["at"] == "2026-09-01T12:00:00Z"
    assert n["numbers"] == {"errors_last_hour": 120, "baseline": 24.5} and n["group_key"] == "g"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    class Handler:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 Message accepted for delivery"

    logins: list[tuple[str, str]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"smtp-" + TOKEN.encode())

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    controller.logins = logins
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_email_over_real_smtp(location, smtp_server, monkeypatch):
    controller, handler = smtp_server
    monkeypatch.setenv("OPS_TEST_SMTP_USER", "bot")
    monkeypatch.setenv("OPS_TEST_SMTP_PASSWORD", "smtp-" + TOKEN)
    ch = EmailChannel(host="127.0.0.1", port=controller.port, sender="ops@example.org",
                      recipients=["oncall@example.org", "lead@example.org"], username_env="OPS_TEST_SMTP_USER",
                      password_env="OPS_TEST_SMTP_PASSWORD", starttls=False)
    enqueue(location, [note("e1", group="g"), note("e2", group="g")], [ch], T0)
    enqueue(location, [note("e1r", status=RESOLVED, at=T0 + timedelta(hours=1), group="g2")], [ch], T0)
    s = deliver(location, [ch], T0 + timedelta(hours=1))
    assert s.channels["email"].sent == 3 and s.channels["email"].messages == 2
    assert controller.logins == [("bot", "smtp-" + TOKEN)] * 2  # one SMTP session per message
    assert len(handler.messages) == 2
    mail_from, rcpts, raw = handler.messages[0]
    assert mail_from == "ops@example.org" and rcpts == ["oncall@example.org", "lead@example.org"]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "[CRITICAL] Error rate spike (+1 more)"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "What: errors at 5x baseline (e1)" in text and "(e2)" in text and "errors_last_hour: 120" in text
    assert "<h2" in html and "errors at 5x baseline (e2)" in html
    assert 'href="http://127.0.0.1:3000/assets/marts/mart_anomalies"' in html
    resolved = message_from_bytes(handler.messages[1][2], policy=policy.default)
    assert resolved["Subject"].startswith("[RESOLVED] ")
    assert "RESOLVED: Error rate spike" in resolved.get_body(("plain",)).get_content()

    # a failing server (here: no STARTTLS offered) is a ChannelError, without the password
    tls = EmailChannel(host="127.0.0.1", port=controller.port, sender="ops@example.org", recipients=["a@x.org"],
                       username_env="OPS_TEST_SMTP_USER", password_env="OPS_TEST_SMTP_PASSWORD", starttls=True,
                       timeout=5)
    with pytest.raises(ChannelError) as err:
        tls.send([note("e3")])
    assert "STARTTLS" in str(err.value) and TOKEN not in str(err.value)


def test_file_channel_writes_lines(tmp_path):
    ch = FileChannel(tmp_path / "alerts", echo=False)
    ch.send([note("f1", group="g"), note("f2", group="g")])
    ch.send([note("f1r", status=RESOLVED, severity="warning")])
    lines = [json.loads(x) for x in (tmp_path / "alerts" / "notifications.jsonl").read_text().splitlines()]
    assert [x["transition_id"] for x in lines] == ["f1", "f2", "f1r"]
    assert lines[0]["since"] == "2026-09-01T11:40:00Z"
    log = (tmp_path / "alerts" / "notifications.log").read_text().splitlines()
    assert len(log) == 3
    assert "FIRING CRITICAL error_rate subject-f1 - Error rate spike" in log[0]
    assert "errors_last_hour=120" in log[0] and "mart_anomalies" in log[0]
    assert "RESOLVED WARNING" in log[2]


def test_channels_from_env(tmp_path, monkeypatch):
    env = {"OPS_ALERT_FILE_DIR": str(tmp_path / "a")}
    assert [c.name for c in channels_from_env(env)] == ["file"]
    env |= {"OPS_ALERT_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/{TOKEN}",
            "OPS_ALERT_WEBHOOK_URL": f"https://example.org/{TOKEN}",
            "OPS_ALERT_SMTP_HOST": "smtp.example.org", "OPS_ALERT_EMAIL_TO": "a@x.org, b@x.org",
            "OPS_ALERT_SMTP_PASSWORD": TOKEN}
    cfg = ChannelConfig.from_env(env)
    assert [c.name for c in cfg.channels()] == ["file", "slack", "webhook", "email"]
    assert cfg.email["recipients"] == ["a@x.org", "b@x.org"] and cfg.email["port"] == 587
    assert TOKEN not in cfg.describe() and TOKEN not in repr(cfg.channels())


# ---------------------------------------------------------------------------------------------
# secrets


def test_secrets_never_in_errors_or_logs(location, http_server, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server = http_server(fail_first=10**6)
    monkeypatch.setenv(SLACK_ENV, f"{server.url}/slack/services/{TOKEN}")
    monkeypatch.setenv(HOOK_ENV, f"http://127.0.0.1:{_free_port()}/hook/{TOKEN}")  # nothing listens
    channels = [SlackWebhookChannel(url_env=SLACK_ENV, timeout=5), WebhookChannel(url_env=HOOK_ENV, timeout=5)]
    enqueue(location, [note("k1")], channels, T0)
    s = deliver(location, channels, T0)
    assert s.failed == 2
    errors = {r["channel"]: r["last_error"] for r in outbox_rows(location)}
    assert "HTTP 500" in errors["slack"] and f"${SLACK_ENV}" in errors["slack"]
    assert "boom at $" + SLACK_ENV in errors["slack"]  # the server echoed the path: redacted
    assert f"${HOOK_ENV}" in errors["webhook"] and "ConnectionRefusedError" in errors["webhook"]  # http.client, not urllib
    for text in [*errors.values(), caplog.text, *capsys.readouterr()]:
        assert TOKEN not in text
    assert "send failed" in caplog.text

    # a bad URL (urllib quotes it in its own error) and a missing variable are redacted too
    monkeypatch.setenv(HOOK_ENV, f"htp:/{TOKEN}")
    with pytest.raises(ChannelError) as err:
        WebhookChannel(url_env=HOOK_ENV).send([note("k2")])
    assert TOKEN not in str(err.value) and f"${HOOK_ENV}" in str(err.value)
    monkeypatch.delenv(HOOK_ENV)
    with pytest.raises(ChannelError, match=f"\\${HOOK_ENV} is not set"):
        WebhookChannel(url_env=HOOK_ENV).send([note("k2")])


# ---------------------------------------------------------------------------------------------
# reports through the same channels


@dataclass(frozen=True)
class _Report:  # the fields of orchestration.lib.reports.Report that delivery reads
    period: str
    period_start: datetime
    period_end: datetime
    html_path: Path
    markdown_path: Path
    markdown: str
    title: str
    headline: dict


def test_a_report_goes_to_slack_as_markdown_and_to_email_with_the_html_attached(
        location, http_server, smtp_server, monkeypatch, tmp_path):
    from orchestration.lib.alerts.report_notice import send_report

    server = http_server()
    controller, handler = smtp_server
    monkeypatch.setenv(SLACK_ENV, f"{server.url}/slack/{TOKEN}")
    html_file = tmp_path / "daily-2026-09-01.html"
    html_file.write_text("<html><body><svg class='chart'></svg></body></html>")
    report = _Report("daily", T0 - timedelta(days=1), T0, html_file, tmp_path / "daily.md",
                     "# Daily health 2026-08-31\n**Errors:** 1,204 (+12% vs the day before)\n- top template: `timeout <*>`",
                     "Daily health 2026-08-31", {"errors": 1204, "error_change_pct": 12.0, "worst_job": "poster"})
    channels = [SlackWebhookChannel(url_env=SLACK_ENV, timeout=5),
                EmailChannel(host="127.0.0.1", port=controller.port, sender="ops@example.org",
                             recipients=["oncall@example.org"], username_env=None, password_env=None, starttls=False)]
    queued, summary = send_report(location, report, channels, T0)
    assert queued == 2 and summary.sent == 2
    (body,) = server.received("/slack")
    assert body["blocks"][0]["text"]["text"] == "[REPORT] Daily health 2026-08-31"
    section = body["blocks"][1]["text"]["text"]
    assert "*Daily health 2026-08-31*" in section and "*Errors:* 1,204" in section and "**" not in section
    (_, _, raw), = handler.messages
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "[REPORT] Daily health 2026-08-31"
    assert "**Errors:** 1,204" in msg.get_body(("plain",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "daily-2026-09-01.html" and "svg" in attachment.get_content()

    # the same period's report again (a retried schedule): nothing new is sent
    queued, summary = send_report(location, report, channels, T0 + timedelta(minutes=5))
    assert (queued, summary.sent) == (0, 0)
    assert len(server.received("/slack")) == 1 and len(handler.messages) == 1
