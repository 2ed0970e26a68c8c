"""The one way the bridge opens a Salesforce org: credentials in, a ready `SalesforceOrg` out.

- Authentication: the JWT bearer flow (a private key whose certificate is on the connected
  app) or a refresh token (from `sfbridge org connect --web`). Both post to
  ``{login_url}/services/oauth2/token`` with pyjwt/requests here, not through
  simple-salesforce, whose JWT login derives the token URL from a "domain" and cannot reach a
  My Domain with a port or the local org.
- HTTP: one `requests.Session` per org with ``trust_env = False`` (so REQUESTS_CA_BUNDLE,
  proxies and .netrc from the environment cannot override or leak into it), an explicit
  ``verify`` (the org's CA bundle, else the system trust store), and a retrying adapter.
- simple-salesforce gets ``instance_url`` + ``session_id`` + that session.
- `SalesforceOrg.call` runs any API call with exactly one re-authentication on
  INVALID_SESSION_ID and turns failures into `bridge.salesforce.errors.SalesforceError`.

Retry policy (urllib3 `Retry` on the adapter), decided per method:

- Connection failures (DNS, refused, connect timeout) are retried for every method: the
  request never reached Salesforce, so repeating it cannot apply it twice.
- Read failures and 502/503/504 answers are retried only for GET/HEAD/PUT/DELETE/OPTIONS.
  A POST (create, composite) or PATCH that timed out or hit a gateway error may already have
  been applied; repeating it blindly could create a duplicate record. Those surface as a
  `SalesforceTransientError` and the caller retries at a level that can check first
  (writeback upserts by external id, jobs re-check state).
- The token endpoint is the exception: a grant has no effect besides issuing a token, so its
  POSTs are retried like reads (a separate adapter mounted on the token URL).
- Retry-After is not honoured here (a long wait would stall a worker); 429/REQUEST_LIMIT are
  left to the job queue's own backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, format_soql
from urllib3.util.retry import Retry

from bridge import defaults, logsafe
from bridge.errors import UsageError
from bridge.salesforce import budget, oauth
from bridge.salesforce.errors import (
    INVALID_SESSION_ID,
    SalesforceError,
    SalesforceUsageError,
    classify,
    from_response,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_API_VERSION = "63.0"
# Timeouts, retry counts and backoff: bridge.defaults (API_TIMEOUT, CONNECT_RETRIES, ...).
RETRY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class OrgCredentials:
    """How to authenticate to one org. Secrets are kept out of the repr."""

    login_url: str
    client_id: str
    username: str | None = None
    private_key_pem: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    api_version: str = DEFAULT_API_VERSION

    @property
    def auth_method(self) -> str:
        """``jwt`` (private key) or ``web`` (refresh token from the web-server flow)."""
        return "jwt" if self.private_key_pem else "web"

    def check(self) -> None:
        if not self.client_id:
            raise UsageError("client_id (the connected app's consumer key) is required")
        if self.private_key_pem:
            if not self.username:
                raise UsageError("the JWT bearer flow needs the integration user's username")
        elif not self.refresh_token:
            raise UsageError(
                "no credentials: give a private key (JWT bearer flow) or connect with --web "
                "to obtain a refresh token"
            )


class _Adapter(HTTPAdapter):
    """A retrying adapter that also applies a default timeout (simple-salesforce sets none)."""

    def send(self, request: Any, timeout: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        timeout = defaults.API_TIMEOUT if timeout is None else timeout
        return super().send(request, timeout=timeout, **kwargs)


def _retry(*, methods: frozenset[str]) -> Retry:
    return Retry(
        total=defaults.CONNECT_RETRIES + defaults.STATUS_RETRIES,
        connect=defaults.CONNECT_RETRIES,
        read=defaults.STATUS_RETRIES,
        status=defaults.STATUS_RETRIES,
        other=0,  # TLS and protocol errors: retrying will not fix a certificate
        redirect=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=methods,
        backoff_factor=defaults.BACKOFF_FACTOR,
        respect_retry_after_header=False,
        raise_on_status=False,  # hand back the last 503 so its body can be classified
    )


#: The client name every request of the bridge carries (`Sforce-Call-Options: client=…`);
#: Salesforce puts it in a change event's changeOrigin (``…;client=sfbridge``), so the
#: bridge's own writes are recognised in Change Data Capture events.
CLIENT_NAME = "sfbridge"


def build_session(login_url: str, ca_bundle: str | None = None) -> requests.Session:
    """The org's HTTP session: no environment influence, explicit trust, retrying adapters."""
    logsafe.install()  # tokens flow from here on: make sure no log line can carry one
    session = requests.Session()
    session.headers["Sforce-Call-Options"] = f"client={CLIENT_NAME}"
    session.trust_env = False
    session.verify = ca_bundle or True
    api = _Adapter(max_retries=_retry(methods=IDEMPOTENT_METHODS))
    session.mount("https://", api)
    session.mount("http://", api)
    # The longest mounted prefix wins: token grants are safe to repeat, so retry their POSTs.
    session.mount(
        oauth.token_url(login_url), _Adapter(max_retries=_retry(methods=frozenset({"POST"})))
    )
    return session


class SalesforceOrg:
    """A connected org: a simple-salesforce client, its session and the token behind both."""

    def __init__(
        self,
        credentials: OrgCredentials,
        http: requests.Session,
        token: oauth.TokenResponse,
        *,
        on_refresh_token: Callable[[str], None] | None = None,
    ):
        self._credentials = credentials
        self.http = http
        self._token = token
        self._on_refresh_token = on_refresh_token
        self._lock = threading.Lock()
        self._username = credentials.username
        self._adopt_refresh_token(token)
        self.sf = self._client()
        #: The newest daily API usage Salesforce reported (Sforce-Limit-Info on every REST
        #: answer, or the limits resource): bridge.salesforce.budget.
        self.api_usage: budget.ApiUsage | None = None
        http.hooks["response"].append(self._note_api_usage)

    # ---- what callers read ------------------------------------------------------------------

    @property
    def credentials(self) -> OrgCredentials:
        return self._credentials

    @property
    def access_token(self) -> str:
        return self._token.access_token

    @property
    def instance_url(self) -> str:
        return self._token.instance_url

    @property
    def api_version(self) -> str:
        return self._credentials.api_version

    @property
    def org_id(self) -> str:
        return self._token.org_id

    @property
    def user_id(self) -> str:
        return self._token.user_id

    @property
    def auth_method(self) -> str:
        return self._credentials.auth_method

    @property
    def refresh_token(self) -> str | None:
        """The newest refresh token (Salesforce may rotate it on each use)."""
        return self._credentials.refresh_token

    @property
    def username(self) -> str:
        """The connected user's username (asked of the org when the flow did not name it)."""
        if self._username is None:
            soql = format_soql("SELECT Username FROM User WHERE Id = {}", self.user_id)
            records = self.call(self.sf.query, soql).get("records") or []
            self._username = str(records[0]["Username"]) if records else self.user_id
        return self._username

    def _note_api_usage(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        usage = budget.from_header(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.api_usage = usage

    def read_api_usage(self) -> budget.ApiUsage | None:
        """Ask the `limits` resource (DailyApiRequests); its answer's header counts too."""
        limits = budget.from_limits(self.call(self.sf.limits))
        self.api_usage = budget.newest(self.api_usage, limits)
        return self.api_usage

    def streaming_session(self) -> requests.Session:
        """A session of its own for a long-lived channel (the Bayeux long poll, which keeps
        its own cookies), built like the org's: same trust settings, same call counting."""
        session = build_session(self._credentials.login_url, self._credentials.ca_bundle)
        session.hooks["response"] = list(self.http.hooks["response"])
        return session

    def close(self) -> None:
        """Release the HTTP connections (the org can still reconnect on the next call)."""
        self.http.close()

    def __repr__(self) -> str:
        return (
            f"<SalesforceOrg org_id={self.org_id} user_id={self.user_id} "
            f"instance_url={self.instance_url} auth={self.auth_method} token=***>"
        )

    # ---- authentication ---------------------------------------------------------------------

    def _client(self) -> Salesforce:
        return Salesforce(
            instance_url=self.instance_url,
            session_id=self.access_token,
            version=self.api_version,
            session=self.http,
        )

    def reauthenticate(self, stale_token: str | None = None) -> None:
        """Get a new access token with the same credentials.

        With `stale_token`, does nothing when another thread already replaced that token, so
        a burst of INVALID_SESSION_ID answers costs one token request, not one each.
        """
        with self._lock:
            if stale_token is not None and stale_token != self._token.access_token:
                return
            log.info("re-authenticating to org %s", self.org_id)
            token = _obtain_token(self.http, self._credentials)
            if token.org_id != self._token.org_id:
                raise SalesforceUsageError(
                    f"re-authentication reached org {token.org_id}, not {self._token.org_id}; "
                    "check the login URL and credentials",
                    code="org_mismatch",
                )
            self._adopt_refresh_token(token)
            instance_changed = token.instance_url != self._token.instance_url
            self._token = token
            if instance_changed:
                self.sf = self._client()
            else:
                # Update in place: callers may hold bound methods of this client (sf.query).
                self.sf.session_id = token.access_token
                self.sf.headers["Authorization"] = f"Bearer {token.access_token}"

    def _adopt_refresh_token(self, token: oauth.TokenResponse) -> None:
        """Keep a refresh token Salesforce rotated (the old one stops working) and report it."""
        if token.refresh_token and token.refresh_token != self._credentials.refresh_token:
            had_one = self._credentials.refresh_token is not None
            self._credentials = _replace_refresh_token(self._credentials, token.refresh_token)
            if had_one and self._on_refresh_token is not None:
                self._on_refresh_token(token.refresh_token)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an API call; re-authenticate once on INVALID_SESSION_ID; classify failures.

        `fn` must read the token when it runs (``org.sf.query``, ``org.sf.Lead.create``,
        `request`), so that the repeat after re-authentication uses the new one.
        """
        token = self.access_token
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = classify(exc)
            if err is None:
                raise
            if err.code != INVALID_SESSION_ID:
                raise err from exc
            log.info("org %s: session expired or invalid; re-authenticating once", self.org_id)
        self.reauthenticate(stale_token=token)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = classify(exc)
            if err is None:
                raise
            if err.code == INVALID_SESSION_ID:
                raise SalesforceUsageError(
                    f"Salesforce still rejects the session right after re-authenticating "
                    f"({err.message})",
                    code=INVALID_SESSION_ID,
                    status=err.status,
                ) from exc
            raise err from exc

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A raw REST call on the instance (``path`` relative to ``/services/data/vXX.X/``,
        or starting with ``/``), with the token, re-authentication and error classification.
        """
        return self.call(self._request_once, method, path, **kwargs)

    def _request_once(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if path.startswith(("https://", "http://")):
            url = path
        elif path.startswith("/"):
            url = f"{self.instance_url}{path}"
        else:
            url = f"{self.instance_url}/services/data/v{self.api_version}/{path}"
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}
        headers.update(kwargs.pop("headers", None) or {})
        response = self.http.request(method, url, headers=headers, **kwargs)
        if response.status_code >= 300:
            raise from_response(response)
        return response


def _replace_refresh_token(creds: OrgCredentials, refresh_token: str) -> OrgCredentials:
    return replace(creds, refresh_token=refresh_token)


def _obtain_token(http: requests.Session, creds: OrgCredentials) -> oauth.TokenResponse:
    if creds.private_key_pem:
        assert creds.username is not None
        return oauth.jwt_bearer_token(
            http,
            login_url=creds.login_url,
            client_id=creds.client_id,
            username=creds.username,
            private_key_pem=creds.private_key_pem,
        )
    assert creds.refresh_token is not None
    return oauth.refresh_token_grant(
        http,
        login_url=creds.login_url,
        client_id=creds.client_id,
        refresh_token=creds.refresh_token,
        client_secret=creds.client_secret,
    )


def connect(
    creds: OrgCredentials,
    *,
    on_refresh_token: Callable[[str], None] | None = None,
) -> SalesforceOrg:
    """Authenticate and return a ready org. Raises a classified `SalesforceError` on refusal.

    `on_refresh_token` is called with a new refresh token when Salesforce rotates it, so the
    caller can store it (encrypted) before the old one stops working.
    """
    creds.check()
    http = build_session(creds.login_url, creds.ca_bundle)
    token = _obtain_token(http, creds)
    org = SalesforceOrg(creds, http, token, on_refresh_token=on_refresh_token)
    log.info(
        "connected to org %s as user %s on %s (%s)",
        org.org_id,
        org.user_id,
        org.instance_url,
        creds.auth_method,
    )
    return org


def connect_with_token(
    creds: OrgCredentials, token: oauth.TokenResponse, http: requests.Session
) -> SalesforceOrg:
    """An org from a token already obtained (the web-server flow's code exchange)."""
    return SalesforceOrg(creds, http, token)


__all__ = [
    "OrgCredentials",
    "SalesforceError",
    "SalesforceOrg",
    "build_session",
    "connect",
    "connect_with_token",
]
