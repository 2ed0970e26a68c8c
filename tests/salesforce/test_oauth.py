"""The web-server flow with PKCE: authorize URL, callback checks, loopback listener, exchange."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import UsageError
from bridge.salesforce import oauth
from bridge.salesforce.connection import OrgCredentials, build_session, connect_with_token
from bridge.salesforce.errors import SalesforceUsageError
from tests.services import free_port
from tests.sf_doubles import CLIENT_ID, LOGIN_URL, ORG_ID, USER_ID, FakeSalesforce, new_rsa_key


@pytest.fixture(scope="module")
def public_key() -> str:
    return new_rsa_key()[1]


@pytest.fixture
def fake(public_key: str) -> Iterator[FakeSalesforce]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru("http://127.0.0.1")
        yield FakeSalesforce(rsps, public_key_pem=public_key).install()


def start_flow(redirect_uri: str = oauth.DEFAULT_REDIRECT_URI) -> oauth.WebFlow:
    return oauth.WebFlow.start(login_url=LOGIN_URL, client_id=CLIENT_ID, redirect_uri=redirect_uri)


def test_authorize_url_carries_the_pkce_challenge_and_state():
    flow = start_flow()
    parts = urlsplit(flow.authorize_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        f"{LOGIN_URL}/services/oauth2/authorize"
    )
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    digest = hashlib.sha256(flow.code_verifier.encode()).digest()
    assert params == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": oauth.DEFAULT_REDIRECT_URI,
        "scope": "api refresh_token",
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "state": flow.state,
    }
    assert 43 <= len(flow.code_verifier) <= 128
    assert flow.code_verifier not in flow.authorize_url
    assert flow.code_verifier not in repr(flow)


def test_each_login_attempt_has_its_own_state_and_verifier():
    a, b = start_flow(), start_flow()
    assert a.state != b.state
    assert a.code_verifier != b.code_verifier


def test_rfc7636_appendix_b_challenge():
    # RFC 7636 Appendix B: the S256 example verifier and its challenge.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oauth.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_code_exchange_sends_the_verifier_and_yields_a_refresh_token(fake):
    flow = start_flow()
    redirect = fake.authorize(flow.authorize_url)
    code = flow.code_from_callback(redirect)
    http = build_session(LOGIN_URL)
    token = flow.exchange(http, code)

    form = fake.token_requests[-1]
    assert form["grant_type"] == "authorization_code"
    assert form["code_verifier"] == flow.code_verifier
    assert form["redirect_uri"] == flow.redirect_uri
    assert token.refresh_token in fake.refresh_tokens
    org = connect_with_token(
        OrgCredentials(LOGIN_URL, CLIENT_ID, refresh_token=token.refresh_token), token, http
    )
    assert (org.org_id, org.user_id, org.refresh_token) == (ORG_ID, USER_ID, token.refresh_token)


def test_a_code_exchanged_with_another_verifier_is_refused(fake):
    flow = start_flow()
    code = flow.code_from_callback(fake.authorize(flow.authorize_url))
    impostor = oauth.WebFlow(
        login_url=LOGIN_URL,
        client_id=CLIENT_ID,
        redirect_uri=flow.redirect_uri,
        state=flow.state,
        code_verifier=oauth.new_code_verifier(),
    )
    with pytest.raises(SalesforceUsageError) as raised:
        impostor.exchange(build_session(LOGIN_URL), code)
    assert raised.value.code == "invalid_request"


@pytest.mark.parametrize(
    "shape",
    ["url", "query", "mapping"],
)
def test_the_callback_is_accepted_as_url_query_or_parameters(shape):
    flow = start_flow()
    query = f"code=aPrx123&state={flow.state}"
    callback = {
        "url": f"{flow.redirect_uri}?{query}",
        "query": f"?{query}",
        "mapping": {"code": "aPrx123", "state": flow.state},
    }[shape]
    assert flow.code_from_callback(callback) == "aPrx123"  # type: ignore[arg-type]


def test_a_redirect_from_another_attempt_is_refused():
    flow = start_flow()
    with pytest.raises(UsageError, match="state does not match"):
        flow.code_from_callback(f"{flow.redirect_uri}?code=aPrx123&state=forged")


def test_a_denied_authorization_is_a_usage_error():
    flow = start_flow()
    with pytest.raises(SalesforceUsageError) as raised:
        flow.code_from_callback(
            f"{flow.redirect_uri}?error=access_denied&error_description=end-user+denied+"
            f"authorization&state={flow.state}"
        )
    assert raised.value.code == "access_denied"
    assert raised.value.message == "end-user denied authorization"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_the_loopback_listener_receives_the_redirect(fake):
    redirect_uri = f"http://localhost:{free_port()}/OauthRedirect"
    flow = start_flow(redirect_uri)
    with oauth.CallbackListener(redirect_uri) as listener:
        browser_lands_on = fake.authorize(flow.authorize_url).replace("localhost", "127.0.0.1")
        assert _get(browser_lands_on.replace("/OauthRedirect", "/favicon.ico"))[0] == 404
        status, page = _get(browser_lands_on)
        params = listener.wait(timeout=5)
    assert status == 200
    assert "close this window" in page
    assert flow.code_from_callback(params) in fake.codes


def test_the_listener_gives_up_with_a_clear_error():
    with (
        oauth.CallbackListener(f"http://127.0.0.1:{free_port()}/cb") as listener,
        pytest.raises(UsageError, match="no OAuth redirect arrived"),
    ):
        listener.wait(timeout=0.05)


def test_the_listener_refuses_a_redirect_it_cannot_receive():
    with pytest.raises(UsageError, match="not a loopback"):
        oauth.CallbackListener("https://bridge.acme.example/oauth/callback")


def test_the_listener_reports_a_busy_port():
    port = free_port()
    with (
        oauth.CallbackListener(f"http://127.0.0.1:{port}/cb"),
        pytest.raises(UsageError, match="cannot listen"),
    ):
        oauth.CallbackListener(f"http://127.0.0.1:{port}/cb")


def test_the_listener_stops_cleanly_when_never_started():
    listener = oauth.CallbackListener(f"http://127.0.0.1:{free_port()}/cb")
    done = threading.Event()
    threading.Thread(target=lambda: (listener.close(), done.set()), daemon=True).start()
    assert done.wait(5)


def test_the_token_response_signature_is_checked_with_the_client_secret(fake):
    fake.client_secret = "s3cr3t-consumer"
    flow = start_flow()
    code = flow.code_from_callback(fake.authorize(flow.authorize_url))
    token = flow.exchange(build_session(LOGIN_URL), code, client_secret="s3cr3t-consumer")
    assert token.signature and token.issued_at
    with pytest.raises(SalesforceUsageError, match="signature does not match"):
        token.check_signature("another-apps-secret")


def test_a_signature_with_non_ascii_characters_is_a_mismatch_not_a_crash(fake):
    fake.client_secret = "s3cr3t-consumer"
    flow = start_flow()
    code = flow.code_from_callback(fake.authorize(flow.authorize_url))
    token = flow.exchange(build_session(LOGIN_URL), code, client_secret="s3cr3t-consumer")
    altered = dataclasses.replace(token, signature="sïgnature")
    with pytest.raises(SalesforceUsageError, match="signature does not match"):
        altered.check_signature("s3cr3t-consumer")
