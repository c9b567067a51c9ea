"""Alert delivery that cannot jam (issue 14 item 6), against real local servers (no mocks).

Dead letters (a permanent failure, or a transient one after the bounded attempts) never block
their channel; ``replay`` puts them back; every HTTP and SMTP send has a whole-send deadline;
webhook URLs are http(s) only and redirects are not followed; data-derived text is escaped for
Slack and kept on one line where a line break would forge a header or a log line. The HTTP
servers are http.server in a thread, the SMTP server is aiosmtpd (the helpers of
``test_alert_delivery``); the outbox runs on DuckDB and on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_alert_delivery as base
from test_alert_delivery import HOOK_ENV, SLACK_ENV, T0, TOKEN, note

from orchestration.lib.alerts import cli as alerts_cli
from orchestration.lib.alerts.channels import (
    ChannelConfig,
    ChannelError,
    EmailChannel,
    FileChannel,
    SlackWebhookChannel,
    WebhookChannel,
)
from orchestration.lib.alerts.outbox import Backoff, dead_letters, deliver, enqueue, outbox_rows, replay

Reply = tuple[int, dict[str, str], bytes]

# the fixtures of test_alert_delivery: the outbox on DuckDB and PostgreSQL, a real SMTP server
location = base.location
smtp_server = base.smtp_server


class ScriptedServer:
    """Records every POST (path, JSON body) and answers what ``respond(path, body)`` returns
    (default: 200 ok)."""

    def __init__(self, respond: Callable[[str, dict], Reply] | None = None) -> None:
        self.respond = respond or (lambda path, body: (200, {}, b"ok"))
        self.requests: list[tuple[str, dict, int]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, reply = outer.respond(self.path, body)
                with outer.lock:
                    outer.requests.append((self.path, body, status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self, status: int = 200) -> list[dict]:
        with self.lock:
            return [b for _, b, s in self.requests if s == status]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def make(respond: Callable[[str, dict], Reply] | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def hook_ids(body: dict) -> list[str]:
    return [n["transition_id"] for n in body["notifications"]]


def dead_ids(location, channel: str | None = None) -> list[str]:
    return [d["transition_id"] for d in dead_letters(location, channel)]


# ---------------------------------------------------------------------------------------------
# permanent failures: dead-lettered at once, the channel carries on in the same pass


def test_webhook_400_dead_letters_the_poison_and_the_rest_of_the_channel_is_delivered(
        location, scripted, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)

    def respond(path: str, body: dict) -> Reply:  # rejects any message holding the poison, echoing the path
        if "poison" in hook_ids(body):
            return 400, {}, f"invalid payload at {path}".encode()
        return 200, {}, b"ok"

    server = scripted(respond)
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
    ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5, deadline=5)]
    # the poison sits in the middle of a group: the group's message fails as a whole, then each
    # member goes alone, so its neighbours are not sunk with it
    enqueue(location, [note("p1", group="g"), note("poison", group="g"), note("p3", group="g"), note("p4")], ch, T0)
    s = deliver(location, ch, T0)
    c = s.channels["webhook"]
    assert (c.sent, c.dead_lettered, c.failed, c.pending) == (3, 1, 0, 0)
    assert [hook_ids(b) for b in server.bodies(200)] == [["p1"], ["p3"], ["p4"]]
    assert [hook_ids(b) for b in server.bodies(400)] == [["p1", "poison", "p3"], ["poison"]]
    (dead,) = dead_letters(location)
    assert dead["transition_id"] == "poison" and dead["attempts"] == 1
    assert "HTTP 400" in dead["last_error"]
    assert f"invalid payload at ${HOOK_ENV}" in dead["last_error"]  # the echoed URL path: redacted
    for text in (dead["last_error"], caplog.text):
        assert TOKEN not in text
    # a dead letter is out of the queue: later passes neither send it nor wait behind it
    enqueue(location, [note("p5")], ch, T0 + timedelta(minutes=5))
    s = deliver(location, ch, T0 + timedelta(minutes=5))
    assert s.channels["webhook"].sent == 1 and len(server.bodies(400)) == 2
    assert dead_ids(location) == ["poison"]


def test_email_crlf_subject_is_one_line_and_an_unencodable_message_is_dead_lettered(
        location, smtp_server, monkeypatch):
    controller, handler = smtp_server
    ch = EmailChannel(host="127.0.0.1", port=controller.port, sender="ops@example.org",
                      recipients=["oncall@example.org"], username_env=None, password_env=None, starttls=False,
                      timeout=5, deadline=5)
    forged = note("crlf", title="Disk full\r\nBcc: attacker@evil.example\r\n\r\nforged body")
    poison = note("poison", group="g", title="bad \ud800 title")  # a lone surrogate: no charset encodes it
    enqueue(location, [forged, note("m2", group="g"), poison, note("m3", group="g"), note("m4")], [ch], T0)
    s = deliver(location, [ch], T0)
    c = s.channels["email"]
    assert (c.sent, c.dead_lettered, c.failed, c.pending) == (4, 1, 0, 0)
    (dead,) = dead_letters(location)
    assert dead["transition_id"] == "poison" and "invalid message" in dead["last_error"]
    msgs = [message_from_bytes(raw, policy=policy.default) for _, _, raw in handler.messages]
    assert [m.get_body(("plain",)).get_content().count("What: errors at 5x baseline (") for m in msgs] == [1, 1, 1, 1]
    first = msgs[0]
    assert first["Subject"] == "[CRITICAL] Disk full Bcc: attacker@evil.example forged body"
    assert first["Bcc"] is None and handler.messages[0][1] == ["oncall@example.org"]
    assert all("attacker" not in r for _, rcpts, _ in handler.messages for r in rcpts)
    # the group without its poison member: m2 and m3 went alone, then m4
    texts = [m.get_body(("plain",)).get_content() for m in msgs]
    assert ["(m2)" in texts[1], "(m3)" in texts[2], "(m4)" in texts[3]] == [True, True, True]


# ---------------------------------------------------------------------------------------------
# transient failures: bounded attempts, then a dead letter


def test_transient_503_retried_then_dead_lettered_after_max_attempts(location, scripted, monkeypatch):
    server = scripted(lambda path, body: (503, {}, b"try later"))
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
    monkeypatch.setenv("OPS_ALERT_MAX_ATTEMPTS", "3")
    ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5, deadline=5)]
    backoff = Backoff(base_s=30, factor=2, cap_s=600)
    enqueue(location, [note("t1"), note("t2")], ch, T0)
    s = deliver(location, ch, T0, backoff=backoff)  # attempt 1: retry at +30 s, t2 waits behind t1
    assert (s.channels["webhook"].failed, s.channels["webhook"].dead_lettered) == (1, 0)
    s = deliver(location, ch, T0 + timedelta(seconds=30), backoff=backoff)  # attempt 2: +60 s
    assert (s.channels["webhook"].failed, s.channels["webhook"].dead_lettered) == (1, 0)
    assert [hook_ids(b) for _, b, _ in server.requests] == [["t1"], ["t1"]]
    s = deliver(location, ch, T0 + timedelta(seconds=90), backoff=backoff)  # attempt 3 of 3: dead
    c = s.channels["webhook"]
    assert c.dead_lettered == 1 and c.failed == 1 and c.pending == 1  # t2 tried in the same pass
    assert [hook_ids(b) for _, b, _ in server.requests] == [["t1"], ["t1"], ["t1"], ["t2"]]
    rows = {r["transition_id"]: r for r in outbox_rows(location)}
    assert rows["t1"]["dead_lettered_at"] == T0 + timedelta(seconds=90) and rows["t1"]["attempts"] == 3
    assert "HTTP 503" in rows["t1"]["last_error"] and TOKEN not in rows["t1"]["last_error"]
    assert rows["t2"]["dead_lettered_at"] is None and rows["t2"]["attempts"] == 1
    assert rows["t2"]["next_attempt_at"] == T0 + timedelta(seconds=120)


# ---------------------------------------------------------------------------------------------
# replay


def test_replay_brings_a_dead_letter_back_and_it_is_delivered_once_the_server_is_fixed(
        location, scripted, monkeypatch, capsys):
    broken = {"on": True}
    server = scripted(lambda path, body: (404, {}, b"no such hook") if broken["on"] else (200, {}, b"ok"))
    monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
    ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5, deadline=5)]
    enqueue(location, [note("r1"), note("r2")], ch, T0)
    s = deliver(location, ch, T0)
    assert s.channels["webhook"].dead_lettered == 2 and s.channels["webhook"].pending == 0
    assert dead_ids(location) == ["r1", "r2"]
    r1_id = dead_letters(location)[0]["id"]

    broken["on"] = False  # the hook is fixed
    assert deliver(location, ch, T0 + timedelta(minutes=1)).sent == 0  # dead letters are not retried alone
    assert replay(location, ids=[r1_id]) == [r1_id]
    assert replay(location, ids=[r1_id]) == []  # idempotent: no longer a dead letter
    assert replay(location, channel="slack") == []
    row = next(r for r in outbox_rows(location) if r["id"] == r1_id)
    assert (row["attempts"], row["dead_lettered_at"], row["next_attempt_at"]) == (0, None, None)
    s = deliver(location, ch, T0 + timedelta(minutes=2))
    assert s.channels["webhook"].sent == 1
    assert [hook_ids(b) for b in server.bodies(200)] == [["r1"]]
    assert dead_ids(location) == ["r2"]
    assert deliver(location, ch, T0 + timedelta(minutes=3)).sent == 0  # delivered once
    assert replay(location, ids=[r1_id]) == []  # a delivered row is not a dead letter

    # the CLI: status lists the dead letter with its (redacted) error; replay moves it back
    monkeypatch.setenv("OPS_WAREHOUSE_URL", location.dsn if location.is_postgres else str(location.path))
    parser = argparse.ArgumentParser()
    alerts_cli.add_parser(parser.add_subparsers(dest="command"))
    capsys.readouterr()
    args = parser.parse_args(["alerts", "status"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dead letters: 1 (webhook: 1;" in out and "HTTP 404" in out and "r2" in out and TOKEN not in out
    args = parser.parse_args(["alerts", "replay", "--channel", "webhook", "--no-deliver"])
    assert args.func(args) == 0
    assert "replayed 1 dead letter(s)" in capsys.readouterr().out
    assert dead_ids(location) == []
    args = parser.parse_args(["alerts", "replay", "--channel", "webhook", "--no-deliver"])
    assert args.func(args) == 0 and "replayed 0 dead letter(s)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# the whole-send deadline


class TricklingServer:
    """Accepts connections and answers one byte every ``interval`` seconds (never finishing in
    time): ``reply`` is an HTTP answer or an SMTP banner."""

    def __init__(self, reply: bytes, interval: float, read_request: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.stop = threading.Event()

        def serve_one(conn: socket.socket) -> None:
            with conn:
                try:
                    if read_request:
                        conn.settimeout(5)
                        conn.recv(65536)
                    for b in reply:
                        if self.stop.wait(interval):
                            return
                        conn.sendall(bytes([b]))
                except OSError:
                    return

        def serve() -> None:
            self.sock.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except (TimeoutError, OSError):
                    continue
                self.connections += 1
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_trickling_webhook_is_cut_off_at_the_send_deadline(location, monkeypatch):
    deadline = 2.0
    server = TricklingServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", interval=1.0, read_request=True)
    try:
        monkeypatch.setenv(HOOK_ENV, f"{server.url}/hook/{TOKEN}")
        monkeypatch.setenv("OPS_ALERT_SEND_DEADLINE_SECONDS", str(deadline))
        ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5)]  # each read would wait up to 5 s: only the deadline helps
        enqueue(location, [note("slow")], ch, T0)
        started = time.monotonic()
        s = deliver(location, ch, T0)
        elapsed = time.monotonic() - started
        print(f"trickling webhook: deliver returned after {elapsed:.2f} s (deadline {deadline:g} s)")
        assert elapsed < deadline + 1.0
        c = s.channels["webhook"]
        assert (c.sent, c.failed, c.dead_lettered, c.pending) == (0, 1, 0, 1)  # transient: retried later
        assert "send deadline of 2 s" in c.last_error and TOKEN not in c.last_error
        assert server.connections == 1
    finally:
        server.close()


def test_trickling_smtp_server_is_cut_off_at_the_send_deadline():
    deadline = 2.0
    server = TricklingServer(b"220 slow.example ESMTP\r\n", interval=1.0, read_request=False)
    try:
        ch = EmailChannel(host="127.0.0.1", port=server.port, sender="ops@example.org", recipients=["a@x.org"],
                          username_env=None, password_env=None, starttls=False, timeout=5, deadline=deadline)
        started = time.monotonic()
        with pytest.raises(ChannelError) as err:
            ch.send([note("slow-mail")])
        elapsed = time.monotonic() - started
        print(f"trickling SMTP server: send gave up after {elapsed:.2f} s (deadline {deadline:g} s)")
        assert elapsed < deadline + 1.0
        assert not err.value.permanent and "send deadline" in str(err.value)
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# schemes and redirects


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x"])
def test_non_http_schemes_are_refused_at_configuration_and_at_send(location, url, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\$OPS_ALERT_WEBHOOK_URL has the URL scheme .*only http and https"):
        ChannelConfig.from_env({"OPS_ALERT_FILE_DIR": str(tmp_path), "OPS_ALERT_WEBHOOK_URL": url})
    with pytest.raises(ValueError, match=r"\$OPS_ALERT_SLACK_WEBHOOK_URL"):
        ChannelConfig.from_env({"OPS_ALERT_FILE_DIR": str(tmp_path), "OPS_ALERT_SLACK_WEBHOOK_URL": url})

    monkeypatch.setenv(HOOK_ENV, url)  # reached send anyway (set after configuration): permanent
    ch = [WebhookChannel(url_env=HOOK_ENV), FileChannel(tmp_path / "alerts")]
    with pytest.raises(ChannelError) as err:
        ch[0].send([note("f0")])
    assert err.value.permanent and "/etc/hostname" not in str(err.value)
    enqueue(location, [note("f1"), note("f2")], ch, T0)
    s = deliver(location, ch, T0)
    assert s.channels["webhook"].dead_lettered == 2 and s.channels["webhook"].sent == 0
    assert s.channels["file"].sent == 2  # the other channel is unaffected
    assert all("only http and https" in d["last_error"] for d in dead_letters(location, "webhook"))


def test_a_302_redirect_is_not_followed(location, scripted, monkeypatch):
    target = scripted()
    origin = scripted(lambda path, body: (302, {"Location": f"{target.url}/elsewhere"}, b""))
    monkeypatch.setenv(HOOK_ENV, f"{origin.url}/hook/{TOKEN}")
    ch = [WebhookChannel(url_env=HOOK_ENV, timeout=5, deadline=5)]
    enqueue(location, [note("moved"), note("after")], ch, T0)
    s = deliver(location, ch, T0)
    assert s.channels["webhook"].dead_lettered == 2 and s.channels["webhook"].sent == 0
    assert len(origin.requests) == 2 and target.requests == []  # the target never saw a request
    (d1, _) = dead_letters(location)
    assert "HTTP 302" in d1["last_error"] and f"redirected to {target.url}/elsewhere" in d1["last_error"]


# ---------------------------------------------------------------------------------------------
# escaping and line breaks


def test_slack_payload_escapes_mentions_and_ampersands_but_keeps_its_own_links(scripted, monkeypatch):
    server = scripted()
    monkeypatch.setenv(SLACK_ENV, f"{server.url}/slack/{TOKEN}")
    evil = replace(note("esc"), title="<!channel> deploy & rollback\r\nnext line",
                   summary="ping <@U123> see <https://evil.example|the fix> & more", subject="a&b<c>",
                   numbers={"<!here>": 1}, asset_url="http://127.0.0.1:3000/assets/x?a=1&b=2|3")
    SlackWebhookChannel(url_env=SLACK_ENV, timeout=5, deadline=5).send([evil])
    (body,) = server.bodies()
    raw = json.dumps(body)
    for live in ("<!channel>", "<!here>", "<@U123>", "<https://evil.example", "a&b", "& rollback", "& more"):
        assert live not in raw, live
    header = body["blocks"][0]["text"]["text"]
    assert header == "[CRITICAL] &lt;!channel&gt; deploy &amp; rollback next line"
    assert body["text"].endswith(header)
    section = body["blocks"][1]["text"]["text"]
    assert "*&lt;!channel&gt; deploy &amp; rollback next line*" in section
    assert "ping &lt;@U123&gt; see &lt;https://evil.example|the fix&gt; &amp; more" in section
    fields = [f["text"] for b in body["blocks"] if "fields" in b for f in b["fields"]]
    assert fields == ["*&lt;!here&gt;*\n1"]
    context = [e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert "subject `a&amp;b&lt;c&gt;`" in context[0]
    assert context[1] == "<http://127.0.0.1:3000/assets/x?a=1&amp;b=2%7C3|Open the asset>"  # the link still works


def test_file_channel_log_line_with_a_crlf_subject_stays_one_line(tmp_path):
    ch = FileChannel(tmp_path / "alerts")
    forged = replace(note("crlf"), subject="poster\r\n2026-09-01T12:00:00Z RESOLVED CRITICAL error_rate poster",
                     title="t\u2028x", summary="a\nb\x1b[31m")
    ch.send([forged, note("ok")])
    log_lines = (tmp_path / "alerts" / "notifications.log").read_text().splitlines()
    assert len(log_lines) == 2
    assert "subject-ok" in log_lines[1] and "subject-crlf" not in log_lines[0]
    assert "poster 2026-09-01T12:00:00Z RESOLVED CRITICAL error_rate poster - t x | a b [31m" in log_lines[0]
    records = [json.loads(x) for x in (tmp_path / "alerts" / "notifications.jsonl").read_text().splitlines()]
    assert [r["transition_id"] for r in records] == ["crlf", "ok"]
    assert records[0]["subject"].startswith("poster\r\n")  # the JSON record keeps the data, escaped
