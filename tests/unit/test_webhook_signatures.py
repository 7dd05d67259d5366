"""Webhook signatures and the names secrets are looked up under."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from include.localenv.webhook_client import sign as client_sign
from release_orchestrator.webhooks.signatures import (
    SignatureError,
    check_signature,
    find_secret,
    parse_signature,
    repository_key,
    secret_connection,
    secret_variable,
    sign,
)

BODY = b'{"ref": "refs/heads/main"}'
SECRET = "It's a Secret to Everybody"


def test_sign_is_github_hmac_sha256_of_the_raw_body():
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == f"sha256={expected}"
    assert client_sign(BODY, SECRET) == sign(BODY, SECRET)


def test_githubs_documented_example():
    # The example from GitHub's "Validating webhook deliveries" page.
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    check_signature(b"Hello, World!", signature, "X-Hub-Signature-256", SECRET)


def test_valid_signature_passes_in_upper_case_too():
    check_signature(BODY, sign(BODY, SECRET), "X-Hub-Signature-256", SECRET)
    check_signature(BODY, "sha256=" + sign(BODY, SECRET)[7:].upper(), "X-Hub-Signature-256", SECRET)


@pytest.mark.parametrize(
    "header,message",
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("", "missing X-Hub-Signature-256 header"),
        ("sha1=" + "a" * 40, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
        ("sha256=" + "a" * 63, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
        ("sha256=" + "g" * 64, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
        ("a" * 64, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
    ],
)
def test_missing_or_wrongly_encoded_header(header, message):
    with pytest.raises(SignatureError, match=message):
        parse_signature(header, "X-Hub-Signature-256")


def test_wrong_secret_wrong_body_and_no_secret_are_refused_alike():
    good = sign(BODY, SECRET)
    for body, secret in ((BODY, "other"), (BODY + b" ", SECRET), (BODY, None)):
        with pytest.raises(SignatureError, match="^X-Hub-Signature-256 does not match$"):
            check_signature(body, good, "X-Hub-Signature-256", secret)


@pytest.mark.parametrize(
    "repository,key",
    [
        ("acme/webapp", "acme__webapp"),
        ("Acme/My-App.js", "acme__my_app_js"),
        ("team_x/repo", "team_x__repo"),
    ],
)
def test_secret_names(repository, key):
    assert repository_key(repository) == key
    assert secret_variable(repository) == f"release_webhook_secret__{key}"
    assert secret_connection(repository) == f"release_webhook__{key}"


def test_lookup_order_variable_then_connection_then_global():
    variables = {"release_webhook_secret__acme__webapp": "per-repo", "release_webhook_secret": "global"}
    passwords = {"release_webhook__acme__webapp": "from-connection", "release_webhook__acme__api": "api-conn"}
    lookup = dict(variable=variables.get, connection_password=passwords.get)
    assert find_secret("acme/webapp", **lookup) == "per-repo"
    assert find_secret("acme/api", **lookup) == "api-conn"
    assert find_secret("acme/other", **lookup) == "global"
    assert find_secret(None, **lookup) == "global"
    assert find_secret("acme/other", variable={}.get, connection_password={}.get) is None
