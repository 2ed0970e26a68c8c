"""An HTTP-level double of a Salesforce org's OAuth and REST endpoints, built on `responses`.

It behaves like the real endpoints where the connection code depends on it: the token
endpoint verifies the JWT bearer assertion (signature with the registered public key, iss,
sub, aud, exp) or the refresh token, issues access tokens; REST calls are refused with
401 INVALID_SESSION_ID unless their bearer token is live. Used where the local org would be
overkill (error shapes, retries, exact requests); end-to-end tests use the local org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LOGIN_URL = "https://login.salesforce.com"
INSTANCE_URL = "https://acme-dev-ed.my.salesforce.com"
ORG_ID = "00D5g00000ABCDEAAA"
USER_ID = "0055g00000XYZ12AAB"
CLIENT_ID = "3MVG9sfbridgeTestConsumerKey"
USERNAME = "integration@acme.example"
API = f"{INSTANCE_URL}/services/data/v63.0"


def new_rsa_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def error_body(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code, "fields": fields or []}]


@dataclass
class FakeSalesforce:
    rsps: responses.RequestsMock
    public_key_pem: str
    login_url: str = LOGIN_URL
    instance_url: str = INSTANCE_URL
    org_id: str = ORG_ID
    user_id: str = USER_ID
    client_id: str = CLIENT_ID
    username: str = USERNAME
    audience: str = LOGIN_URL
    client_secret: str | None = None
    refresh_tokens: set[str] = field(default_factory=set)
    rotate_refresh_tokens: bool = False
    #: Tokens the REST endpoints accept; `expire_sessions()` empties it.
    live_tokens: set[str] = field(default_factory=set)
    #: Every token ever issued (for "never logged" checks).
    issued: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    #: When true, newly issued tokens are dead on arrival (a broken session policy).
    issue_dead_tokens: bool = False
    #: Authorization codes handed out by `authorize`: code -> (code_challenge, redirect_uri).
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    issue_refresh_token_on_code: bool = True
    query_records: list[dict[str, Any]] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def install(self) -> FakeSalesforce:
        self.rsps.add_callback(
            responses.POST, f"{self.login_url}/services/oauth2/token", callback=self._token
        )
        self.rsps.add_callback(responses.GET, f"{API}/query/", callback=self._query)
        return self

    @property
    def id_url(self) -> str:
        return f"{self.login_url}/id/{self.org_id}/{self.user_id}"

    def _issue(self) -> str:
        token = f"{self.org_id}!AQ0AQ.sfbridge-test-access-token-{next(self._serial):04d}"
        self.issued.append(token)
        if not self.issue_dead_tokens:
            self.live_tokens.add(token)
        return token

    def expire_sessions(self) -> None:
        self.live_tokens.clear()

    def _oauth_error(self, error: str, description: str) -> tuple[int, dict[str, str], str]:
        body = {"error": error, "error_description": description}
        return 400, {"Content-Type": "application/json"}, json.dumps(body)

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(request.body or "").items()}
        self.token_requests.append(form)
        grant = form.get("grant_type")
        body: dict[str, str] = {"instance_url": self.instance_url, "id": self.id_url}
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(
                    form["assertion"],
                    self.public_key_pem,
                    algorithms=["RS256"],
                    audience=self.audience,
                    options={"require": ["iss", "sub", "aud", "exp"]},
                )
            except jwt.InvalidAudienceError:
                return self._oauth_error("invalid_grant", "audience is invalid")
            except jwt.PyJWTError:
                return self._oauth_error("invalid_grant", "invalid assertion")
            self.assertions.append(claims)
            if claims["iss"] != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if claims["sub"] != self.username:
                return self._oauth_error("invalid_grant", "user hasn't approved this consumer")
            if claims["exp"] > time.time() + 300:
                return self._oauth_error("invalid_grant", "expiration is too far in the future")
        elif grant == "refresh_token":
            if form.get("client_id") != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if self.client_secret and form.get("client_secret") != self.client_secret:
                return self._oauth_error("invalid_client", "invalid client credentials")
            if form.get("refresh_token") not in self.refresh_tokens:
                return self._oauth_error("invalid_grant", "expired access/refresh token")
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(form["refresh_token"])
                new = f"5Aep861sfbridge-test-refresh-{next(self._serial):04d}"
                self.refresh_tokens.add(new)
                self.issued.append(new)
                body["refresh_token"] = new
        elif grant == "authorization_code":
            if form.get("client_id") != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if self.client_secret and form.get("client_secret") != self.client_secret:
                return self._oauth_error("invalid_client", "invalid client credentials")
            entry = self.codes.pop(form.get("code", ""), None)
            if entry is None:
                return self._oauth_error("invalid_grant", "invalid authorization code")
            challenge, redirect_uri = entry
            if form.get("redirect_uri") != redirect_uri:
                return self._oauth_error("redirect_uri_mismatch", "redirect_uri must match")
            verifier = form.get("code_verifier")
            if not verifier:
                return self._oauth_error("invalid_grant", "code_verifier is missing")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return self._oauth_error("invalid_request", "invalid code verifier")
            if self.issue_refresh_token_on_code:
                new = f"5Aep861sfbridge-test-refresh-{next(self._serial):04d}"
                self.refresh_tokens.add(new)
                self.issued.append(new)
                body["refresh_token"] = new
        else:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        body.update(access_token=self._issue(), token_type="Bearer", scope="api")
        body["issued_at"] = str(int(time.time() * 1000))
        if self.client_secret:
            mac = hmac.new(
                self.client_secret.encode(), (body["id"] + body["issued_at"]).encode(), "sha256"
            )
            body["signature"] = base64.b64encode(mac.digest()).decode()
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def authorize(self, authorize_url: str) -> str:
        """What a person logging in does: returns the URL the browser is redirected to."""
        parts = urlsplit(authorize_url)
        assert f"{parts.scheme}://{parts.netloc}" == self.login_url
        assert parts.path == "/services/oauth2/authorize"
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert params["response_type"] == "code"
        assert params["client_id"] == self.client_id
        assert params["code_challenge_method"] == "S256"
        code = f"aPrx{secrets.token_urlsafe(24)}"
        self.issued.append(code)
        self.codes[code] = (params["code_challenge"], params["redirect_uri"])
        query = urlencode({"code": code, "state": params["state"]})
        return f"{params['redirect_uri']}?{query}"

    def authorized(self, request: Any) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") in self.live_tokens

    def rest(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """A REST endpoint that answers `body` to a live session, 401 otherwise."""

        def reply(request: Any) -> tuple[int, dict[str, str], str]:
            if not self.authorized(request):
                return (
                    401,
                    {"Content-Type": "application/json"},
                    json.dumps(error_body("INVALID_SESSION_ID", "Session expired or invalid")),
                )
            return status, {"Content-Type": "application/json"}, json.dumps(body)

        self.rsps.add_callback(method, f"{API}/{path}", callback=reply)

    def query(self, records: list[dict[str, Any]]) -> None:
        """What the next queries answer (a query for the connected user answers that user)."""
        self.query_records = records

    def _query(self, request: Any) -> tuple[int, dict[str, str], str]:
        if not self.authorized(request):
            return (
                401,
                {"Content-Type": "application/json"},
                json.dumps(error_body("INVALID_SESSION_ID", "Session expired or invalid")),
            )
        soql = parse_qs(urlsplit(request.url).query).get("q", [""])[0]
        records = self.query_records
        if soql == f"SELECT Username FROM User WHERE Id = '{self.user_id}'":
            records = [{"attributes": {"type": "User"}, "Username": self.username}]
        body = {"totalSize": len(records), "done": True, "records": records}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)
