"""A real PostgreSQL for tests and benchmarks: the pip package ``pgserver`` (PostgreSQL 18 binaries in a
wheel), started by the suite itself on a unix socket in a temporary folder, never a hand-started service.

``shared_postgres()`` starts one server per process on first use (~1 s) and stops it, and removes its
folder, when the process exits; ``PostgresServer.fresh_database()`` makes an empty database with a unique
name and returns its SQLAlchemy URL (``postgresql+psycopg://postgres:@/<name>?host=<socket folder>``), so
tests share the server but not the data. ``postgres`` is the pytest fixture (session scope; import it
into a test module: ``from edgeloop.testkit.postgres import postgres  # noqa: F401``). As root, pgserver
runs the server as its own ``pgserver`` system user. Leaves out tuning (the server runs with
PostgreSQL's defaults, durable commits included) and TCP (the socket only: nothing listens on a port).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["PostgresServer", "postgres", "shared_postgres"]

_lock = threading.Lock()
_server: PostgresServer | None = None


@dataclass
class PostgresServer:
    """A running pgserver: its socket folder and a way to make databases on it."""

    handle: Any  # pgserver.PostgresServer
    socket_dir: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres:@/{database}?host={self.socket_dir}"

    def fresh_database(self, prefix: str = "t") -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(dbname="postgres", user="postgres", host=self.socket_dir, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def shared_postgres() -> PostgresServer:
    """This process's PostgreSQL server, started on first use, stopped at exit."""
    global _server
    with _lock:
        if _server is None:
            with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR, so /tmp/runtime-<uid> (fine)
                warnings.simplefilter("ignore")
                import pgserver

            folder = Path(tempfile.mkdtemp(prefix="edgeloop-pg-"))
            atexit.register(shutil.rmtree, folder, True)  # runs after pgserver's own atexit stop (LIFO)
            handle = pgserver.get_server(folder / "data", cleanup_mode="stop")
            host = parse_qs(urlsplit(handle.get_uri()).query)["host"][0]
            _server = PostgresServer(handle, host)
        return _server


def _fixture() -> Any:
    import pytest

    @pytest.fixture(scope="session")
    def postgres() -> PostgresServer:
        """A real PostgreSQL server shared by the whole test session (``fresh_database()`` per test)."""
        return shared_postgres()

    return postgres


try:
    postgres = _fixture()
except ImportError:  # benchmarks use shared_postgres() without pytest installed
    postgres = None
