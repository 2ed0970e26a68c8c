"""OAuth conformance: JWT bearer (pyjwt), password, web-server flow with PKCE, refresh, expiry."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _assertion(org: DevOrg, *, key: Any = None, **claims: Any) -> str:
    payload = {
        "iss": org.info["client_id"],
        "sub": org.user("integration")["username"],
        "aud": org.info["login_url"],
        "exp": int(time.time()) + 180,
    }
    payload.update(claims)
    pem = key or Path(org.info["jwt_private_key_path"]).read_bytes()
    return jwt.encode(payload, pem, algorithm="RS256")


def _token(org: DevOrg, **form: str) -> tuple[int, dict[str, Any]]:
    r = org.session().post(f"{org.base_url}/services/oauth2/token", data=form, timeout=10)
    return r.status_code, r.json()


def _client(org: DevOrg, token: dict[str, Any]) -> Salesforce:
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=org.session(),
        version="63.0",
    )


def test_jwt_bearer_flow(devorg: DevOrg) -> None:
    for aud in (devorg.info["login_url"], "https://login.salesforce.com"):
        status, token = _token(devorg, grant_type=JWT_GRANT, assertion=_assertion(devorg, aud=aud))
        assert status == 200, token
        assert token["token_type"] == "Bearer" and "refresh_token" not in token
        assert token["instance_url"] == devorg.base_url
        integration = devorg.user("integration")["id"]
        assert token["id"] == f"{devorg.base_url}/id/{devorg.info['org_id']}/{integration}"
        assert token["issued_at"].isdigit() and token["signature"]
        sf = _client(devorg, token)
        created = sf.Account.create({"Name": "Via JWT"})["id"]
        assert sf.Account.get(created)["CreatedById"] == integration


def _other_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"aud": "https://example.com"}, "invalid_grant", "audience is invalid"),
        ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
        ({"sub": "nobody@sfbridge.devorg"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"exp": int(time.time()) - 3600}, "invalid_grant", "expired authorization code"),
        ({"key": "other"}, "invalid_grant", "invalid assertion"),
    ],
)
def test_jwt_bearer_errors(
    devorg: DevOrg, claims: dict[str, Any], error: str, description: str
) -> None:
    if claims.pop("key", None):
        assertion = _assertion(devorg, key=_other_key())
    else:
        assertion = _assertion(devorg, **claims)
    status, body = _token(devorg, grant_type=JWT_GRANT, assertion=assertion)
    assert (status, body) == (400, {"error": error, "error_description": description})


def test_password_grant(devorg: DevOrg) -> None:
    info, sales = devorg.info, devorg.user("sales")
    form = {
        "grant_type": "password",
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],
        "username": sales["username"],
    }
    status, token = _token(devorg, **form, password=sales["password"])
    assert status == 200 and token["id"].endswith(sales["id"])
    status, body = _token(devorg, **form, password="wrong")
    assert (status, body["error"]) == (400, "invalid_grant")
    assert body["error_description"] == "authentication failure"
    status, body = _token(devorg, **{**form, "client_secret": "nope"}, password=sales["password"])
    assert (status, body["error"]) == (400, "invalid_client")
    status, body = _token(devorg, grant_type="magic")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


def test_web_server_flow_with_pkce_and_refresh(devorg: DevOrg) -> None:
    info = devorg.info
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": info["client_id"],
        "redirect_uri": "https://bridge.example/oauth/callback",
        "state": "st-123",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    http = devorg.session()
    page = http.get(f"{devorg.base_url}/services/oauth2/authorize", params=params, timeout=10)
    assert page.status_code == 200 and "Allow Access?" in page.text
    sales = devorg.user("sales")
    answer = http.post(
        f"{devorg.base_url}/services/oauth2/authorize",
        data={**params, "username": sales["username"], "password": sales["password"],
              "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    assert location.netloc == "bridge.example"
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]
    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": info["client_id"],
        "redirect_uri": params["redirect_uri"],
    }
    status, body = _token(devorg, **exchange, code_verifier="wrong-verifier")
    assert (status, body["error"]) == (400, "invalid_grant")
    # a code is single-use even when the exchange failed; get a fresh one
    answer = http.post(
        f"{devorg.base_url}/services/oauth2/authorize",
        data={**params, "username": sales["username"], "password": sales["password"]},
        allow_redirects=False,
        timeout=10,
    )
    exchange["code"] = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
    status, token = _token(devorg, **exchange, code_verifier=verifier)
    assert status == 200 and token["refresh_token"]
    assert _client(devorg, token).query("SELECT Id FROM Lead LIMIT 1")["done"] is True

    status, refreshed = _token(
        devorg,
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
    )
    assert status == 200 and refreshed["access_token"] != token["access_token"]
    assert "refresh_token" not in refreshed
    status, body = _token(
        devorg, grant_type="refresh_token", refresh_token="bogus", client_id=info["client_id"]
    )
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
    )


def test_sessions_expire_by_org_clock_and_on_demand(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    sf.query("SELECT Id FROM Lead")
    clean_devorg.control("clock", {"advance_seconds": 2 * 3600 + 5})
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.content[0]["errorCode"] == "INVALID_SESSION_ID"

    fresh = clean_devorg.sf("sales")
    fresh.query("SELECT Id FROM Lead")
    assert clean_devorg.control("expire-tokens")["expired"] >= 1
    with pytest.raises(SalesforceExpiredSession):
        fresh.query("SELECT Id FROM Lead")
    clean_devorg.sf("sales").query("SELECT Id FROM Lead")  # logging in again works
