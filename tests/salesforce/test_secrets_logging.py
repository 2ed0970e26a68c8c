"""Secrets are never logged: every logger at DEBUG through connect, query, re-auth and storage."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator

import pytest
import responses

from bridge import logsafe, orgs
from bridge.config import OrgConfig
from bridge.salesforce import oauth
from bridge.salesforce.connection import OrgCredentials, connect
from bridge.store import Store
from bridge.vault import Vault, generate_key
from tests.services import free_port
from tests.sf_doubles import CLIENT_ID, LOGIN_URL, USERNAME, FakeSalesforce, new_rsa_key

#: Loggers that see requests and responses; each is set to DEBUG explicitly (a library may
#: set its own level, which would hide what it would log in a verbose deployment).
NOISY_LOGGERS = ["", "urllib3", "urllib3.connectionpool", "requests", "simple_salesforce",
                 "simple_salesforce.api", "bridge"]  # fmt: skip

CLIENT_SECRET = "s3cr3t-consumer-8E1F"
PASSWORD = "hunter2-devorg-password"


def secret_fragments(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_not_in_logs(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> None:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        texts.append(record.exc_text or "")
    everything = "\n".join(texts)
    for secret in secrets:
        assert secret not in everything, f"a secret was logged: {secret[:12]}..."


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in NOISY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    return new_rsa_key()


@pytest.fixture
def fake(rsa_keys: tuple[str, str]) -> Iterator[FakeSalesforce]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru("http://127.0.0.1")
        yield FakeSalesforce(
            rsps, public_key_pem=rsa_keys[1], client_secret=CLIENT_SECRET
        ).install()


def test_nothing_secret_is_logged_across_every_flow(
    debug_logs, fake, rsa_keys, sqlite_store: Store, monkeypatch
):
    vault = Vault([generate_key()])
    monkeypatch.setenv("ACME_SECRET", CLIENT_SECRET)
    config = OrgConfig.model_validate(
        {
            "login_url": LOGIN_URL,
            "client_id": CLIENT_ID,
            "username": USERNAME,
            "client_secret_env": "ACME_SECRET",
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main"},
        }
    )
    # JWT connect, a query, an expired session and the re-authentication it triggers.
    org = connect(orgs.jwt_credentials("acme", config, rsa_keys[0]))
    fake.query([{"attributes": {"type": "Lead"}, "Id": "00Q5g00000LEAD01AAA"}])
    fake.expire_sessions()
    org.call(org.sf.query, "SELECT Id FROM Lead")
    orgs.save_connection(
        sqlite_store, vault, "acme", config, org, private_key_pem=rsa_keys[0], auth_method="jwt"
    )
    orgs.open_org(sqlite_store, vault, "acme", config)

    # The web-server flow through the loopback listener, with a rotating refresh token.
    fake.rotate_refresh_tokens = True
    redirect_uri = f"http://127.0.0.1:{free_port()}/OauthRedirect"
    attempt = orgs.WebConnect.start("acme", config, redirect_uri)
    with oauth.CallbackListener(redirect_uri) as listener:
        urllib.request.urlopen(fake.authorize(attempt.flow.authorize_url), timeout=5).close()  # noqa: S310
        web = attempt.finish(listener.wait(timeout=5))
    first_refresh = web.refresh_token
    fake.expire_sessions()
    web.call(web.sf.query, "SELECT Id FROM Lead")
    assert web.refresh_token != first_refresh  # rotated on the re-authentication

    # Refusals log too: a revoked refresh token and a wrong password-like secret.
    with pytest.raises(Exception, match="expired access/refresh token"):
        connect(OrgCredentials(LOGIN_URL, CLIENT_ID, refresh_token="5Aep861-revoked-token",
                               client_secret=CLIENT_SECRET))  # fmt: skip
    logging.getLogger("bridge.test").info("login with password=%s", PASSWORD)

    # The capture works (so the check below can fail): our own lines are there.
    assert "re-authenticating to org" in debug_logs.text
    assert "login with password=***" in debug_logs.text

    secrets = [*fake.issued, "5Aep861-revoked-token", CLIENT_SECRET, PASSWORD]
    secrets += [attempt.flow.code_verifier, *secret_fragments(rsa_keys[0])]
    assert len(fake.issued) >= 8  # access tokens, refresh tokens, authorization code
    assert_not_in_logs(debug_logs, secrets)
    for text in (repr(org), repr(web), repr(web.credentials), repr(attempt)):
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer 00D5g00000ABCDE!AQ0AQ.tokenpart", "AQ0AQ.tokenpart"),
        ("session 00D5g00000ABCDEAAA!AQcAQH0Xyz.Qr_5 expired", "AQcAQH0Xyz"),
        ("POST /services/oauth2/token grant_type=refresh_token&refresh_token=5Aep861xyz&"
         "client_secret=abc123", "5Aep861xyz"),
        ("POST /services/oauth2/token grant_type=refresh_token&refresh_token=5Aep861xyz&"
         "client_secret=abc123", "abc123"),
        ('{"access_token": "opaque-token-value", "instance_url": "https://x"}',
         "opaque-token-value"),
        ("GET /OauthRedirect?code=aPrx8x7Y&state=s1", "aPrx8x7Y"),
        ("assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.sig", "eyJhbGciOiJSUzI1NiJ9"),
        ("key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
         "MIIEvQIBADANBg"),
        ("password: hunter2", "hunter2"),
    ],
)  # fmt: skip
def test_the_redactor_masks_secrets_in_any_shape(line, secret):
    assert secret not in logsafe.redact(line)


def test_the_redactor_keeps_ordinary_text():
    line = "connected to org 00D5g00000ABCDEAAA as user 0055g00000XYZ12AAB errorCode=NOT_FOUND"
    assert logsafe.redact(line) == line


def test_installed_redaction_covers_messages_arguments_and_tracebacks(caplog):
    logsafe.install()
    log = logging.getLogger("bridge.test.redaction")
    caplog.set_level(logging.DEBUG, logger="bridge.test.redaction")
    log.debug("token response %s", {"access_token": "00D5g00000ABCDE!AQ.secretpart"})
    try:
        raise RuntimeError("refresh_token=5Aep861-in-an-exception")
    except RuntimeError:
        log.exception("failed")
    assert "secretpart" not in caplog.text
    assert "5Aep861-in-an-exception" not in caplog.text
    assert "refresh_token=***" in caplog.text
