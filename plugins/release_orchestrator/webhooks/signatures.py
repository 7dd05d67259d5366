"""Webhook signatures (HMAC-SHA256 of the raw body, as GitHub and Bitbucket send them) and where secrets live.

Secrets are looked up per repository, first match wins:

1. Airflow Variable  `release_webhook_secret__<owner>__<name>`
2. Airflow Connection `release_webhook__<owner>__<name>`, its password
3. Airflow Variable  `release_webhook_secret` (one secret for every repository)

`<owner>__<name>` is the repository lowercased, every character other than a-z and 0-9 replaced by `_`, and
the `/` between owner and name written `__`: `Acme/my-app.js` -> `acme__my_app_js`. Variables and
connections may come from any configured secrets backend (or AIRFLOW_VAR_* / AIRFLOW_CONN_* variables).
Secrets are never logged.

The signature is checked before the body is parsed (app.py): the repository is not known yet, so the receiver
tries the secrets that could have signed it (`candidate_secrets`: the global one, then those of the
repositories the pipelines watch on that endpoint) on the raw bytes, and only a body one of them signed is read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator

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


def matching_secret(body: bytes, given: str, secrets: Iterable[str | None]) -> str | None:
    """The first of `secrets` whose HMAC-SHA256 of `body` is `given` (a parsed, lowercase hex digest), else None.

    Each distinct secret costs one pass over the body (about 15 ms for 25 MB); none is tried twice."""
    tried: set[str] = set()
    for secret in secrets:
        if not secret or secret in tried:
            continue
        tried.add(secret)
        if hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), given):
            return secret
    return None


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


def secret_names(repository: str | None) -> list[str]:
    """Where `repository`'s own secret is looked up (None: the global secret), in order."""
    if not repository:
        return [GLOBAL_SECRET_VARIABLE]
    return [secret_variable(repository), secret_connection(repository)]


def own_secret(
    repository: str | None,
    variable: Callable[[str], str | None] = _airflow_variable,
    connection_password: Callable[[str], str | None] = _airflow_connection_password,
) -> str | None:
    """`repository`'s own secret (its Variable, then its Connection), or with None the global one; None if unset."""
    if not repository:
        return variable(GLOBAL_SECRET_VARIABLE) or None
    return variable(secret_variable(repository)) or connection_password(secret_connection(repository)) or None


def find_secret(
    repository: str | None,
    variable: Callable[[str], str | None] = _airflow_variable,
    connection_password: Callable[[str], str | None] = _airflow_connection_password,
) -> str | None:
    """The webhook secret for `repository` (its own, else the global one), or None if none is set."""
    return own_secret(repository, variable, connection_password) or own_secret(None, variable, connection_password)


def candidate_secrets(own: Callable[[str | None], str | None], repositories: Iterable[str]) -> Iterator[str | None]:
    """The secrets that may sign a delivery whose repository is not read yet, cheapest first: the global one, then
    each repository's own (looked up only if no earlier one matched)."""
    yield own(None)
    for repository in repositories:
        yield own(repository)


class SecretCache:
    """Secrets looked up at most once per `ttl()` seconds per repository (None: the global secret).

    Each lookup is a secrets-backend call, a metadata DB query for a Variable, and a delivery needs two or
    more: at hundreds of deliveries a second they were most of the receiver's database work. The receiver asks
    again with `fresh=True` before it refuses a delivery, so only the answer "signed" is ever served from here.
    """

    def __init__(
        self,
        lookup: Callable[[str | None], str | None] = own_secret,
        ttl: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if ttl is None:
            from release_orchestrator import settings

            ttl = settings.WEBHOOK_SECRET_CACHE_SECONDS.get
        self.lookup, self.ttl, self.clock = lookup, ttl, clock
        self._lock = threading.Lock()
        self._entries: dict[str | None, tuple[float, str | None]] = {}

    def get(self, repository: str | None, fresh: bool = False) -> str | None:
        key = repository.lower() if repository else None
        now, ttl = self.clock(), self.ttl()  # read on every call: an unusable setting fails every delivery alike
        if not fresh:
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and now - entry[0] < ttl:
                return entry[1]
        secret = self.lookup(repository)
        with self._lock:
            self._entries[key] = (now, secret)
        return secret
