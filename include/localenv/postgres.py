"""Scratch PostgreSQL databases for the local environment's Airflow metadata DB.

The integration tests run Airflow on PostgreSQL, as production does (SQLite allows one writer at a
time, so busy moments end in "database is locked"). Each session gets a database of its own, created
empty and dropped afterwards, so two sessions on one server never see each other's runs.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server could not be reached or refused to create a database."""


def _connect(server_url: str):
    import psycopg  # the metadata DB itself goes through psycopg2; psycopg 3 is only used here

    try:
        return psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise PostgresUnavailable(
            f"cannot connect to PostgreSQL at {_without_password(server_url)}: {error}"
        ) from error


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def server_is_reachable(server_url: str = DEFAULT_SERVER_URL) -> bool:
    try:
        _connect(server_url).close()
    except PostgresUnavailable:
        return False
    return True


def create_scratch_database(server_url: str = DEFAULT_SERVER_URL, prefix: str = "release_orchestrator") -> str:
    """Create an empty database on the server and return the SQLAlchemy URL Airflow should use for it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _connect(server_url) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2", path=f"/{name}"))


def drop_database(database_url: str, server_url: str = DEFAULT_SERVER_URL) -> None:
    """Drop a database made by create_scratch_database, ending any connection a killed process left."""
    name = urlsplit(database_url).path.lstrip("/")
    with _connect(server_url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
