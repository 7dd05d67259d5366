"""Webhook signatures (HMAC-SHA256 of the raw body, as GitHub and Bitbucket send them) and where secrets live.

Secrets are looked up per repository, first match wins:

1. Airflow Variable  `release_webhook_secret__<owner>__<name>`
2. Airflow Connection `release_webhook__<owner>__<name>`, its password
3. Airflow Variable  `release_webhook_secret` (one secret for every repository)

`<owner>__<name>` is the repository lowercased, every character other than a-z and 0-9 replaced by `_`, and
the `/` between owner and name written `__`: `Acme/my-app.js` -> `acme__my_app_js`. Variables and
connections may come from any configured secrets backend (or AIRFLOW_VAR_* / AIRFLOW_CONN_* variables).
Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable

log = logging.getLogger(__name__)

GLOBAL_SECRET_VARIABLE = "release_webhook_secret"
_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class SignatureError(Exception):
    """The request is not authenticated (answered with 401)."""


def repository_key(repository: str) -> str:
    owner, _, name = repository.partition("/")
    return "__".join(re.sub(r"[^a-z0-9]", "_", part.lower()) for part in (owner, name))


def secret_variable(repository: str) -> str:
    return f"{GLOBAL_SECRET_VARIABLE}__{repository_key(repository)}"


def secret_connection(repository: str) -> str:
    return f"release_webhook__{repository_key(repository)}"


def sign(body: bytes, secret: str) -> str:
    """The header value a sender puts on `body`: "sha256=<hex>"."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(body: bytes, header_value: str | None, header_name: str, secret: str | None) -> None:
    """Raises SignatureError unless `header_value` is the HMAC-SHA256 of `body` with `secret`."""
    given = parse_signature(header_value, header_name)
    # A missing secret and a wrong signature get the same answer: callers learn nothing about the setup.
    if secret is None:
        raise SignatureError(f"{header_name} does not match")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError(f"{header_name} does not match")


def parse_signature(header_value: str | None, header_name: str) -> str:
    """The lowercase hex digest of a "sha256=<64 hex>" header; raises SignatureError when absent or malformed."""
    if not header_value:
        raise SignatureError(f"missing {header_name} header")
    match = _SIGNATURE_RE.fullmatch(header_value.strip())
    if not match:
        raise SignatureError(f"{header_name} must be 'sha256=' followed by 64 hex digits")
    return match.group(1).lower()


# --- secret lookup --------------------------------------------------------------------------------------------


def _airflow_variable(key: str) -> str | None:
    from airflow.models import Variable

    return Variable.get(key, default_var=None)


def _airflow_connection_password(conn_id: str) -> str | None:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id).password
    except AirflowNotFoundException:
        return None


def find_secret(
    repository: str | None,
    variable: Callable[[str], str | None] = _airflow_variable,
    connection_password: Callable[[str], str | None] = _airflow_connection_password,
) -> str | None:
    """The webhook secret for `repository` (None: only the global one applies), or None if none is set."""
    candidates: list[tuple[str, Callable[[str], str | None]]] = []
    if repository:
        candidates += [(secret_variable(repository), variable), (secret_connection(repository), connection_password)]
    candidates.append((GLOBAL_SECRET_VARIABLE, variable))
    for name, lookup in candidates:
        value = lookup(name)
        if value:
            log.debug("webhook secret for %s from %s", repository, name)
            return value
    names = [secret_variable(repository), secret_connection(repository)] if repository else []
    log.warning(
        "no webhook secret for %s: looked for %s",
        repository or "a delivery naming no repository",
        ", ".join([*names, GLOBAL_SECRET_VARIABLE]),
    )
    return None
