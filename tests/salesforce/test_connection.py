"""The connection factory against an HTTP-level double of Salesforce (tests/sf_doubles.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
import responses

from bridge import defaults
from bridge.errors import UsageError
from bridge.salesforce import connection, oauth
from bridge.salesforce.connection import OrgCredentials, SalesforceOrg, connect
from bridge.salesforce.errors import (
    SalesforcePermanentError,
    SalesforceTransientError,
    SalesforceUsageError,
)
from tests.sf_doubles import (
    API,
    CLIENT_ID,
    INSTANCE_URL,
    LOGIN_URL,
    ORG_ID,
    USER_ID,
    USERNAME,
    FakeSalesforce,
    error_body,
    new_rsa_key,
)

LEADS = [{"attributes": {"type": "Lead"}, "Id": "00Q5g00000LEAD01AAA", "Email": "a@b.example"}]


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[str, str]:
    return new_rsa_key()


@pytest.fixture
def fake(rsa_keys: tuple[str, str]) -> Iterator[FakeSalesforce]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeSalesforce(rsps, public_key_pem=rsa_keys[1]).install()


def jwt_creds(private_pem: str, **overrides: str) -> OrgCredentials:
    values = {
        "login_url": LOGIN_URL,
        "client_id": CLIENT_ID,
        "username": USERNAME,
        "private_key_pem": private_pem,
    }
    values.update(overrides)
    return OrgCredentials(**values)  # type: ignore[arg-type]


def connect_jwt(fake: FakeSalesforce, rsa_keys: tuple[str, str]) -> SalesforceOrg:
    return connect(jwt_creds(rsa_keys[0]))


# ---- JWT bearer flow ---------------------------------------------------------------------------


def test_jwt_connect_posts_a_signed_assertion_with_the_documented_claims(fake, rsa_keys):
    before = time.time()
    org = connect_jwt(fake, rsa_keys)

    (form,) = fake.token_requests
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(
        form["assertion"], rsa_keys[1], algorithms=["RS256"], audience=LOGIN_URL
    )  # the signature checks out against the public key on the connected app
    assert jwt.get_unverified_header(form["assertion"])["alg"] == "RS256"
    assert claims["iss"] == CLIENT_ID
    assert claims["sub"] == USERNAME
    assert claims["aud"] == LOGIN_URL
    assert before < claims["exp"] <= time.time() + 180  # short-lived, inside Salesforce's 3 min

    assert (org.org_id, org.user_id, org.instance_url) == (ORG_ID, USER_ID, INSTANCE_URL)
    assert org.access_token == fake.issued[-1]
    assert org.sf.base_url == f"{API}/"
    assert org.sf.session is org.http


def test_the_session_ignores_the_environment_and_verifies_explicitly(fake, rsa_keys, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nowhere/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    org = connect(jwt_creds(rsa_keys[0]))
    assert org.http.trust_env is False
    settings = org.http.merge_environment_settings(f"{API}/query/", {}, None, None, None)
    assert settings["verify"] is True
    assert not settings["proxies"]

    with_ca = connection.build_session(LOGIN_URL, "/etc/sfbridge/org-ca.pem")
    settings = with_ca.merge_environment_settings(f"{API}/query/", {}, None, None, None)
    assert settings["verify"] == "/etc/sfbridge/org-ca.pem"


@responses.activate
def test_every_request_names_the_bridge_in_sforce_call_options() -> None:
    # Salesforce copies the client name into a change event's changeOrigin: own writes are
    # recognised in Change Data Capture events (bridge.streaming.avro_events.own_write).
    responses.get(f"{API}/limits/", json={})
    connection.build_session(LOGIN_URL).get(f"{API}/limits/")
    assert responses.calls[0].request.headers["Sforce-Call-Options"] == "client=sfbridge"


def test_the_streaming_session_is_built_like_the_orgs_and_counted_alike(
    fake, rsa_keys, monkeypatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nowhere/ca.pem")
    org = connect(jwt_creds(rsa_keys[0], ca_bundle="/etc/sfbridge/org-ca.pem"))
    counted: list[str] = []
    org.http.hooks["response"].append(lambda r, *a, **k: counted.append(r.url))  # metrics
    cometd = f"{INSTANCE_URL}/cometd/{org.api_version}"
    session = org.streaming_session()
    assert session is not org.http  # the long poll keeps its own cookies and connection
    assert session.trust_env is False
    settings = session.merge_environment_settings(cometd, {}, None, None, None)
    assert settings["verify"] == "/etc/sfbridge/org-ca.pem"
    fake.rsps.add(responses.POST, cometd, json=[{"channel": "/meta/handshake"}])
    session.post(cometd, json=[{"channel": "/meta/handshake"}])
    assert counted == [cometd]


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com/", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.site.com/partners", "https://acme.my.site.com/partners"),
        ("https://127.0.0.1:8410", "https://127.0.0.1:8410"),
    ],
)
def test_jwt_audience_follows_salesforce_rules(login_url, audience):
    assert oauth.jwt_audience(login_url) == audience


def test_jwt_to_a_my_domain_posts_there_with_the_login_audience(rsa_keys):
    my_domain = "https://acme.my.salesforce.com"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeSalesforce(rsps, rsa_keys[1], login_url=my_domain).install()
        org = connect(jwt_creds(rsa_keys[0], login_url=my_domain))
    assert org.org_id == ORG_ID
    assert fake.assertions[0]["aud"] == "https://login.salesforce.com"


def test_a_refused_jwt_login_is_a_usage_error_with_what_to_check(fake, rsa_keys):
    with pytest.raises(SalesforceUsageError) as raised:
        connect(jwt_creds(rsa_keys[0], username="someone.else@acme.example"))
    assert raised.value.code == "invalid_grant"
    assert "user hasn't approved this consumer" in raised.value.message
    assert "pre-authorized" in str(raised.value)


def test_a_key_that_does_not_match_the_certificate_is_refused(fake):
    other_private, _ = new_rsa_key()
    with pytest.raises(SalesforceUsageError) as raised:
        connect(jwt_creds(other_private))
    assert raised.value.code == "invalid_grant"


@pytest.mark.parametrize(
    "pem",
    ["not a key", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"],
)
def test_an_unusable_private_key_is_a_clear_usage_error(fake, pem):
    with pytest.raises(UsageError, match="not a PEM private key"):
        connect(jwt_creds(pem))
    assert fake.token_requests == []


def test_missing_credentials_are_refused_before_any_request(fake):
    with pytest.raises(UsageError, match="no credentials"):
        connect(OrgCredentials(login_url=LOGIN_URL, client_id=CLIENT_ID))
    assert fake.token_requests == []


# ---- refresh-token grant -----------------------------------------------------------------------


def test_refresh_token_connect_and_rotation_is_handed_back(fake):
    fake.refresh_tokens.add("5Aep861-first-refresh")
    fake.client_secret = "s3cr3t-consumer"
    fake.rotate_refresh_tokens = True
    rotated: list[str] = []
    creds = OrgCredentials(
        login_url=LOGIN_URL,
        client_id=CLIENT_ID,
        refresh_token="5Aep861-first-refresh",
        client_secret="s3cr3t-consumer",
    )
    org = connect(creds, on_refresh_token=rotated.append)
    assert fake.token_requests[0]["grant_type"] == "refresh_token"
    assert fake.token_requests[0]["client_secret"] == "s3cr3t-consumer"
    assert org.org_id == ORG_ID
    assert org.auth_method == "web"
    # The first token rotated: the connection keeps using, and reports, the new one.
    first_new = org.refresh_token
    assert first_new != "5Aep861-first-refresh"

    fake.expire_sessions()
    fake.query(LEADS)
    assert org.call(org.sf.query, "SELECT Id FROM Lead")["records"][0]["Id"] == LEADS[0]["Id"]
    assert fake.token_requests[-1]["refresh_token"] == first_new
    assert rotated == [first_new, org.refresh_token]
    assert org.refresh_token != first_new


def test_a_revoked_refresh_token_is_a_usage_error(fake):
    creds = OrgCredentials(login_url=LOGIN_URL, client_id=CLIENT_ID, refresh_token="revoked")
    with pytest.raises(SalesforceUsageError) as raised:
        connect(creds)
    assert (raised.value.code, raised.value.message) == (
        "invalid_grant",
        "expired access/refresh token",
    )


# ---- calls, re-authentication and classification -------------------------------------------


def test_one_reauthentication_on_invalid_session_then_success(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    fake.query(LEADS)
    first_token = org.access_token
    fake.expire_sessions()

    result = org.call(org.sf.query, "SELECT Id, Email FROM Lead")

    assert result["records"] == LEADS
    assert len(fake.token_requests) == 2  # the connect, and exactly one re-authentication
    assert org.access_token != first_token
    assert org.sf.session_id == org.access_token


def test_invalid_session_after_reauthentication_is_a_usage_error_not_a_loop(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    fake.query(LEADS)
    fake.issue_dead_tokens = True  # a session policy that kills every new session
    fake.expire_sessions()

    with pytest.raises(SalesforceUsageError) as raised:
        org.call(org.sf.query, "SELECT Id FROM Lead")

    assert raised.value.code == "INVALID_SESSION_ID"
    assert "after re-authenticating" in raised.value.message
    assert len(fake.token_requests) == 2


def test_concurrent_expiries_cost_one_token_request(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    stale = org.access_token
    org.reauthenticate(stale_token=stale)
    org.reauthenticate(stale_token=stale)  # a second caller that saw the same dead token
    assert len(fake.token_requests) == 2


def test_salesforce_errors_from_calls_are_classified(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    fake.rest(
        responses.POST,
        "sobjects/Lead/",
        error_body("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]",
                   ["LastName"]),
        status=400,
    )  # fmt: skip
    with pytest.raises(SalesforcePermanentError) as raised:
        org.call(org.sf.Lead.create, {"Company": "Acme"})
    assert (raised.value.code, raised.value.fields, raised.value.status) == (
        "REQUIRED_FIELD_MISSING",
        ["LastName"],
        400,
    )


def test_non_salesforce_errors_pass_through_unchanged(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)

    def broken() -> None:
        raise KeyError("Id")

    with pytest.raises(KeyError):
        org.call(broken)


def test_raw_requests_reauthenticate_and_classify(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    fake.rest(responses.GET, "limits", {"DailyApiRequests": {"Max": 15000, "Remaining": 14999}})
    fake.expire_sessions()
    assert org.request("GET", "limits").json()["DailyApiRequests"]["Max"] == 15000
    assert len(fake.token_requests) == 2

    fake.rest(
        responses.POST,
        "composite/sobjects",
        error_body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        status=403,
    )
    with pytest.raises(SalesforceTransientError) as raised:
        org.request("POST", "composite/sobjects", json={"allOrNone": False, "records": []})
    assert raised.value.code == "REQUEST_LIMIT_EXCEEDED"


# ---- retries -----------------------------------------------------------------------------------


def _flaky(fake: FakeSalesforce, method: str, path: str, failures: int, body: object) -> list[int]:
    """An endpoint that answers 503 `failures` times, then `body`; returns the status log."""
    statuses: list[int] = []

    def reply(request):  # type: ignore[no-untyped-def]
        status = 503 if len(statuses) < failures else 200
        statuses.append(status)
        payload = (
            error_body("SERVER_UNAVAILABLE", "Server temporarily unavailable")
            if status == 503
            else body
        )
        return status, {"Content-Type": "application/json"}, json.dumps(payload)

    fake.rsps.upsert(responses.CallbackResponse(method, f"{API}/{path}", callback=reply))
    return statuses


def test_a_503_on_a_read_is_retried(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    statuses = _flaky(fake, responses.GET, "query/", 1, {"totalSize": 1, "done": True,
                                                          "records": LEADS})  # fmt: skip
    assert org.call(org.sf.query, "SELECT Id FROM Lead")["records"] == LEADS
    assert statuses == [503, 200]


def test_a_503_on_a_create_is_not_repeated_blindly(fake, rsa_keys):
    org = connect_jwt(fake, rsa_keys)
    statuses = _flaky(fake, responses.POST, "sobjects/Lead/", 1, {"id": "00Q", "success": True})
    with pytest.raises(SalesforceTransientError) as raised:
        org.call(org.sf.Lead.create, {"LastName": "Doe", "Company": "Acme"})
    assert raised.value.status == 503
    assert statuses == [503]  # a POST may have been applied: the caller decides, not the adapter


def test_token_requests_are_retried_on_503(rsa_keys):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeSalesforce(rsps, rsa_keys[1])
        rsps.add(
            responses.POST,
            f"{LOGIN_URL}/services/oauth2/token",
            status=503,
            body="<html>Maintenance</html>",
        )
        fake.install()  # registered second: answers the retry
        org = connect(jwt_creds(rsa_keys[0]))
    assert org.org_id == ORG_ID


def test_persistent_503_on_a_read_is_transient(fake, rsa_keys, monkeypatch):
    monkeypatch.setattr(defaults, "BACKOFF_FACTOR", 0)
    org = connect(jwt_creds(rsa_keys[0]))
    statuses = _flaky(fake, responses.GET, "query/", 99, {})
    with pytest.raises(SalesforceTransientError) as raised:
        org.call(org.sf.query, "SELECT Id FROM Lead")
    assert raised.value.code == "SERVER_UNAVAILABLE"
    assert len(statuses) == 1 + defaults.STATUS_RETRIES


# ---- secrets stay out of reprs --------------------------------------------------------------


def test_reprs_hide_tokens_and_keys(fake, rsa_keys):
    creds = jwt_creds(rsa_keys[0], client_secret="s3cr3t-consumer")
    org = connect(creds)
    for text in (repr(org), repr(creds), repr(org.credentials), str(org)):
        assert org.access_token not in text
        assert "PRIVATE KEY" not in text
        assert "s3cr3t-consumer" not in text
    assert ORG_ID in repr(org)
    assert "token=***" in repr(org)


def test_a_refused_reauthentication_surfaces_as_the_login_error(fake):
    fake.refresh_tokens.add("5Aep861-soon-revoked")
    org = connect(OrgCredentials(LOGIN_URL, CLIENT_ID, refresh_token="5Aep861-soon-revoked"))
    fake.refresh_tokens.clear()  # an admin revoked the app's access
    fake.expire_sessions()
    with pytest.raises(SalesforceUsageError) as raised:
        org.call(org.sf.query, "SELECT Id FROM Lead")
    assert (raised.value.code, raised.value.message) == (
        "invalid_grant",
        "expired access/refresh token",
    )


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("limits", f"{API}/limits"),
        ("/services/data/v63.0/limits", f"{API}/limits"),
        (f"{API}/limits", f"{API}/limits"),
    ],
)
def test_raw_request_paths(fake, rsa_keys, path, url):
    org = connect_jwt(fake, rsa_keys)
    fake.rest(responses.GET, "limits", {"DailyApiRequests": {"Max": 15000}})
    response = org.request("GET", path)
    assert response.url == url
    assert response.request.headers["Authorization"] == f"Bearer {org.access_token}"
