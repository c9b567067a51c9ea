"""Test helper: a separate process holding a DuckDB connection (DuckDB locks a file per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


class Holder:
    """A separate process holding a DuckDB connection open: ``write`` (the hourly job writing the
    main file, a transaction open) or a read-only reader that counts on demand."""

    SCRIPT = textwrap.dedent("""
        import sys, duckdb
        path, mode = sys.argv[1], sys.argv[2]
        conn = duckdb.connect(path, read_only=(mode == "read"))
        if mode == "write":
            conn.execute("begin transaction")
            conn.execute("insert into marts.mart_x select -range - 1 from range(5)")
        print("ready", flush=True)
        for line in sys.stdin:
            print(conn.execute("select count(*) from marts.mart_x").fetchone()[0], flush=True)
    """)

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(path), mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
