"""TLS and socket connections reach every client alike: a private PostgreSQL server (initdb into a
temporary folder, ssl=on, its certificate signed by a throwaway CA) is reached with
``sslmode=verify-full&sslrootcert=<ca>`` through psycopg, ADBC and dbt (``dbt debug`` with the
project's profile fed by dbt_env); a wrong CA fails with a message naming the certificate
verification; ``host=<socket directory>`` works through all three."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from orchestration.lib.db import ConnectError, postgres_connect
from orchestration.lib.dbt_env import dbt_env, dbt_target
from orchestration.lib.extract.readers import PostgresArrowSession, PostgresCopySession
from orchestration.lib.settings import DBT_PROJECT_DIR, Location

PG_BIN = Path(os.environ.get("OPS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DBT = Path(sys.executable).parent / "dbt"

pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").exists() or not shutil.which("openssl"),
                                reason="PostgreSQL server binaries (initdb) or openssl not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    """initdb refuses root: run the server binaries as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=ops-warehouse test CA {name}",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)


class TlsServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.socket_dir = root / "sock"
        self.ca = root / "ca.crt"
        self.other_ca = root / "other.crt"

    def dsn(self, **params: str) -> str:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return f"postgresql://postgres@localhost:{self.port}/postgres" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def tls_server():
    started = time.perf_counter()
    # not under pytest's tmp folder: the server runs as the postgres user and must reach its files
    root = Path(tempfile.mkdtemp(prefix="ops_tls_"))
    os.chmod(root, 0o755)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    port = _free_port()
    server = TlsServer(root, port)
    try:
        _make_ca(root, "ca")
        _make_ca(root, "other")  # a CA that signed nothing of this server's
        (root / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
                 "-out", "server.csr", cwd=root)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=root)
        if os.geteuid() == 0:
            shutil.chown(sock, "postgres")
            shutil.chown(root / "server.key", "postgres")
            os.chmod(root / "server.key", 0o600)
            data.mkdir()
            shutil.chown(data, "postgres")
        subprocess.run(_as_server_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                        "--no-sync", "--no-instructions", "-E", "UTF8"]),
                       check=True, capture_output=True)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{sock}'\n"
                       f"ssl = on\nssl_cert_file = '{root / 'server.crt'}'\nssl_key_file = '{root / 'server.key'}'\n"
                       "fsync = off\nshared_buffers = 16MB\nmax_connections = 20\n")
        started_server = subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                                         str(sock / "server.log"), "-w", "-t", "30", "start"]),
                                        capture_output=True, text=True)
        log = sock / "server.log"
        assert started_server.returncode == 0, started_server.stderr + (log.read_text() if log.exists() else "")
        server.setup_seconds = time.perf_counter() - started
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _psycopg_tls(location: Location) -> tuple[str, bool]:
    conn = postgres_connect(location, autocommit=True)
    try:
        return conn.execute("select current_setting('port')").fetchone()[0], bool(
            conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0])
    finally:
        conn.close()


def _dbt_debug(location: Location, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **dbt_env(location), "OPS_DBT_TARGET": dbt_target(location),
           "DBT_LOG_PATH": str(tmp_path / "dbt_logs"), "DBT_TARGET_PATH": str(tmp_path / "dbt_target"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run([str(DBT), "debug", "--connection", "--project-dir", str(DBT_PROJECT_DIR),
                           "--profiles-dir", str(DBT_PROJECT_DIR)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_verify_full_reaches_psycopg_adbc_and_dbt(tls_server, tmp_path):
    location = Location.parse(tls_server.dsn(sslmode="verify-full", sslrootcert=str(tls_server.ca)))
    # psycopg: TLS on, on the private server
    assert _psycopg_tls(location) == (str(tls_server.port), True)
    # ADBC (a URI with every parameter in its query string) and the COPY session
    arrow = PostgresArrowSession(location)
    try:
        assert arrow.rows("select ssl from pg_stat_ssl where pid = pg_backend_pid()") == [(True,)]
    finally:
        arrow.close()
    copy = PostgresCopySession(location)
    try:
        assert copy.rows("select ssl from pg_stat_ssl where pid = pg_backend_pid()") == [(True,)]
    finally:
        copy.close()
    # dbt: the profile gets sslmode and sslrootcert from dbt_env
    env = dbt_env(location)
    assert env["OPS_WAREHOUSE_PG_SSLMODE"] == "verify-full" and env["OPS_WAREHOUSE_PG_SSLROOTCERT"] == str(tls_server.ca)
    proc = _dbt_debug(location, tmp_path)
    assert proc.returncode == 0 and "All checks passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_a_wrong_ca_fails_clearly_everywhere(tls_server, tmp_path):
    location = Location.parse(tls_server.dsn(sslmode="verify-full", sslrootcert=str(tls_server.other_ca)))
    with pytest.raises(ConnectError) as psycopg_failure:
        postgres_connect(location)
    message = str(psycopg_failure.value)
    assert "certificate verify failed" in message and "TLS/certificate verification failed" in message, message
    assert "\n" not in message
    with pytest.raises(ConnectError, match="certificate verif"):
        PostgresArrowSession(location)
    proc = _dbt_debug(location, tmp_path)  # dbt must not fall back to a connection without TLS
    assert proc.returncode != 0
    assert "certificate verify failed" in proc.stdout + proc.stderr, proc.stdout[-3000:]


def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(tls_server):
    # the same server (hostaddr), reached under a name its certificate does not name
    dsn = (f"host=not-in-the-certificate.invalid hostaddr=127.0.0.1 port={tls_server.port} user=postgres "
           f"dbname=postgres sslmode=verify-full sslrootcert='{tls_server.ca}'")
    with pytest.raises(ConnectError, match="TLS") as failure:
        postgres_connect(Location.parse(dsn))
    assert "does not match host name" in str(failure.value)
    # with the right name, the same key=value form (hostaddr, quoted sslrootcert) connects
    assert _psycopg_tls(Location.parse(dsn.replace("not-in-the-certificate.invalid", "localhost")))[1]


def test_a_socket_directory_as_host_reaches_every_client(tls_server, tmp_path):
    for dsn in (f"host={tls_server.socket_dir} port={tls_server.port} user=postgres dbname=postgres",
                f"postgresql:///postgres?host={quote(str(tls_server.socket_dir), safe='')}&port={tls_server.port}"
                f"&user=postgres"):
        location = Location.parse(dsn)
        assert _psycopg_tls(location) == (str(tls_server.port), False)  # a socket: no TLS
        arrow = PostgresArrowSession(location)
        try:
            assert arrow.rows("select current_setting('port')") == [(str(tls_server.port),)]
        finally:
            arrow.close()
    assert dbt_env(location)["OPS_WAREHOUSE_PG_HOST"] == str(tls_server.socket_dir)
    proc = _dbt_debug(location, tmp_path)
    assert proc.returncode == 0 and "All checks passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_setup_is_quick(tls_server):
    assert tls_server.setup_seconds < 20
