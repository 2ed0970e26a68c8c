"""OAuth 2.0 with Salesforce: the JWT bearer flow, the refresh-token grant and the web-server
flow with PKCE (authorize URL, loopback callback listener, code exchange).

Everything here posts to ``{login_url}/services/oauth2/token`` and parses the token response
(``access_token``, ``instance_url``, ``id``, optionally ``refresh_token``). Tokens are kept
out of every repr and log line; see `TokenResponse`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import http.server
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge import defaults
from bridge.errors import UsageError
from bridge.salesforce.errors import classify, from_response, make_error

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Salesforce accepts a JWT whose ``exp`` is at most three minutes ahead; stay inside that.
JWT_LIFETIME_SECONDS = 170
#: The scopes asked for in the web-server flow: API access and a refresh token to keep it.
WEB_FLOW_SCOPE = "api refresh_token"
#: The Salesforce CLI's loopback callback, already registered on many connected apps.
DEFAULT_REDIRECT_URI = "http://localhost:1717/OauthRedirect"

_ID_URL = re.compile(r"/id/(?P<org>[A-Za-z0-9]{15,18})/(?P<user>[A-Za-z0-9]{15,18})/?$")


def token_url(login_url: str) -> str:
    return f"{login_url.rstrip('/')}/services/oauth2/token"


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response. The tokens never appear in its repr."""

    access_token: str = field(repr=False)
    instance_url: str
    id_url: str
    refresh_token: str | None = field(default=None, repr=False)
    issued_at: str | None = None
    signature: str | None = field(default=None, repr=False)

    def check_signature(self, client_secret: str) -> None:
        """Verify ``signature``: Base64(HMAC-SHA256(client_secret, id + issued_at)).

        Salesforce signs the identity URL and issue time with the consumer secret so a client
        that holds the secret can tell the response was not altered on the way.
        """
        if not self.signature or not self.issued_at:
            return  # grants without a client secret carry no signature
        mac = hmac.new(
            client_secret.encode(), (self.id_url + self.issued_at).encode(), hashlib.sha256
        )
        expected = base64.b64encode(mac.digest()).decode()
        if not hmac.compare_digest(expected.encode(), self.signature.encode()):
            raise make_error(
                "invalid_token_response",
                "the token response's signature does not match its identity URL (it was "
                "altered on the way, or client_secret_env holds another app's secret)",
            )

    @property
    def org_id(self) -> str:
        return self._ids()[0]

    @property
    def user_id(self) -> str:
        return self._ids()[1]

    def _ids(self) -> tuple[str, str]:
        # The identity URL is https://<login host>/id/<orgId>/<userId> (OAuth token response).
        m = _ID_URL.search(urlsplit(self.id_url).path)
        if not m:
            raise make_error(
                "invalid_token_response",
                f"the token response's id '{self.id_url}' is not an identity URL "
                "(.../id/<orgId>/<userId>)",
            )
        return m["org"], m["user"]

    @classmethod
    def parse(cls, body: Any) -> TokenResponse:
        if not isinstance(body, Mapping) or not all(
            isinstance(body.get(k), str) and body.get(k)
            for k in ("access_token", "instance_url", "id")
        ):
            keys = ", ".join(sorted(body)) if isinstance(body, Mapping) else type(body).__name__
            raise make_error(
                "invalid_token_response",
                "the token endpoint answered without access_token, instance_url and id "
                f"(got: {keys})",
            )
        token = cls(
            access_token=body["access_token"],
            instance_url=body["instance_url"].rstrip("/"),
            id_url=body["id"],
            refresh_token=body.get("refresh_token") or None,
            issued_at=str(body["issued_at"]) if body.get("issued_at") else None,
            signature=str(body["signature"]) if body.get("signature") else None,
        )
        token._ids()  # fail now, not later, on a malformed identity URL
        return token


def request_token(session: requests.Session, login_url: str, form: dict[str, str]) -> TokenResponse:
    """POST a grant to the token endpoint; a refusal becomes a classified SalesforceError."""
    url = token_url(login_url)
    log.debug("requesting a token (%s) from %s", form.get("grant_type"), url)
    try:
        response = session.post(
            url, data=form, headers={"Accept": "application/json"}, timeout=defaults.TOKEN_TIMEOUT
        )
    except requests.RequestException as exc:
        err = classify(exc)
        raise (err or exc) from None
    if response.status_code != 200:
        raise from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise make_error(
            "invalid_token_response",
            f"the token endpoint at {url} did not answer with JSON "
            f"(HTTP {response.status_code}, {response.headers.get('Content-Type', '?')})",
            status=response.status_code,
        ) from None
    token = TokenResponse.parse(body)
    if form.get("client_secret"):
        token.check_signature(form["client_secret"])
    return token


# ---- JWT bearer flow --------------------------------------------------------------------------


def jwt_audience(login_url: str) -> str:
    """The ``aud`` claim for a login URL.

    Salesforce accepts only https://login.salesforce.com, https://test.salesforce.com or an
    Experience Cloud site URL as the audience ("OAuth 2.0 JWT Bearer Flow for Server-to-Server
    Integration"), even when the assertion is posted to a My Domain login URL. So a My Domain
    (``*.my.salesforce.com``) maps to login, or to test for a sandbox My Domain; any other login
    URL (login, test, a site, the local org) is its own audience.
    """
    url = login_url.rstrip("/")
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return url


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM RSA private key, with a clear error for anything else."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise UsageError(
            "the private key is encrypted with a passphrase; give the unencrypted PEM key "
            "(`openssl rsa -in key.pem -out key-plain.pem`)",
            code="private_key_invalid",
        ) from None
    except ValueError:
        raise UsageError(
            "the private key is not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' "
            "or '-----BEGIN RSA PRIVATE KEY-----')",
            code="private_key_invalid",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UsageError(
            "the private key is not an RSA key; Salesforce's JWT bearer flow signs with RS256",
            code="private_key_invalid",
        )
    return key


def jwt_assertion(
    *,
    client_id: str,
    username: str,
    login_url: str,
    private_key_pem: str,
    now: float | None = None,
) -> str:
    """A signed JWT for the bearer flow: iss=client_id, sub=username, aud, a short exp."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client_id,
        "sub": username,
        "aud": jwt_audience(login_url),
        "exp": issued + JWT_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, load_private_key(private_key_pem), algorithm="RS256")


def jwt_bearer_token(
    session: requests.Session,
    *,
    login_url: str,
    client_id: str,
    username: str,
    private_key_pem: str,
) -> TokenResponse:
    assertion = jwt_assertion(
        client_id=client_id,
        username=username,
        login_url=login_url,
        private_key_pem=private_key_pem,
    )
    return request_token(
        session, login_url, {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
    )


def refresh_token_grant(
    session: requests.Session,
    *,
    login_url: str,
    client_id: str,
    refresh_token: str,
    client_secret: str | None = None,
) -> TokenResponse:
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token}
    if client_secret:
        form["client_secret"] = client_secret
    return request_token(session, login_url, form)


# ---- web-server flow with PKCE ---------------------------------------------------------------


def new_code_verifier() -> str:
    """A PKCE code verifier: 43-128 unreserved characters (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]


def code_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2, method S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class WebFlow:
    """One authorization attempt: the URL to open, and what the callback must carry back."""

    login_url: str
    client_id: str
    redirect_uri: str
    state: str
    code_verifier: str = field(repr=False)
    scope: str = WEB_FLOW_SCOPE

    @classmethod
    def start(
        cls, *, login_url: str, client_id: str, redirect_uri: str = DEFAULT_REDIRECT_URI
    ) -> WebFlow:
        return cls(
            login_url=login_url.rstrip("/"),
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=secrets.token_urlsafe(24),
            code_verifier=new_code_verifier(),
        )

    @property
    def authorize_url(self) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.scope,
                "code_challenge": code_challenge(self.code_verifier),
                "code_challenge_method": "S256",
                "state": self.state,
            }
        )
        return f"{self.login_url}/services/oauth2/authorize?{query}"

    def code_from_callback(self, callback: str | Mapping[str, str]) -> str:
        """The authorization code from the redirect (a URL, a query string or its parameters).

        Refuses a callback whose ``state`` is not ours (a forged or stale redirect) and turns
        Salesforce's ``error`` / ``error_description`` into a usage error.
        """
        params = _callback_params(callback)
        if "error" in params:
            raise make_error(
                params["error"],
                params.get("error_description") or params["error"],
            )
        if params.get("state") != self.state:
            raise UsageError(
                "the redirect does not belong to this login attempt (its state does not match); "
                "start `sfbridge org connect --web` again and use the newest link",
                code="oauth_state_mismatch",
            )
        code = params.get("code")
        if not code:
            raise UsageError(
                "the redirect carries no authorization code", code="oauth_code_missing"
            )
        return code

    def exchange(
        self, session: requests.Session, code: str, *, client_secret: str | None = None
    ) -> TokenResponse:
        """Trade the code (and our code_verifier) for an access and a refresh token."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.code_verifier,
        }
        if client_secret:
            form["client_secret"] = client_secret
        return request_token(session, self.login_url, form)


def _callback_params(callback: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(callback, Mapping):
        return {str(k): str(v) for k, v in callback.items()}
    text = callback.strip()
    query = urlsplit(text).query if "://" in text or text.startswith("/") else text
    return {k: v[0] for k, v in parse_qs(query.lstrip("?")).items() if v}


class CallbackListener:
    """A one-shot loopback HTTP server that receives the OAuth redirect.

    Binds the host and port of the redirect URI (which must be registered on the connected
    app as its callback URL), answers the browser with a short page and hands back the query
    parameters. It logs nothing: the query carries the authorization code.
    """

    def __init__(self, redirect_uri: str):
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise UsageError(
                f"the redirect URI '{redirect_uri}' is not a loopback http:// URL, so this "
                "machine cannot receive it; paste the redirect URL instead (--paste)",
                code="oauth_redirect_not_loopback",
            )
        self.path = parts.path or "/"
        self._host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        self._port = parts.port or 80
        self._params: dict[str, str] | None = None
        self._got = threading.Event()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                if parts.path != listener.path:
                    self.send_error(404)
                    return
                params = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
                failed = "error" in params
                text = (
                    f"Salesforce refused: {params.get('error_description') or params['error']}"
                    if failed
                    else "sfbridge received the authorization. You can close this window."
                )
                body = f"<!doctype html><title>sfbridge</title><p>{html.escape(text)}</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())
                if not listener._got.is_set():
                    listener._params = params
                    listener._got.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the request line holds the authorization code: never log it

        try:
            self._server = http.server.HTTPServer((self._host, self._port), Handler)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {self._host}:{self._port} for the OAuth redirect "
                f"({exc.strerror}); free the port or pass another --redirect-uri registered "
                "on the connected app",
                code="oauth_listener_failed",
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="oauth-callback",
            daemon=True,
        )

    def __enter__(self) -> CallbackListener:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever on a server never started
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters; a usage error if none arrives within `timeout`."""
        if not self._got.wait(timeout):
            raise UsageError(
                f"no OAuth redirect arrived within {int(timeout)} s; run the command again "
                "(or use --paste to paste the redirect URL)",
                code="oauth_timeout",
            )
        assert self._params is not None
        return self._params
