"""OAuth 2.0 endpoints of the local org: `/services/oauth2/token`, `/authorize`, `/userinfo`, `/id`.

Grants: JWT bearer (RFC 7523 as Salesforce profiles it: RS256, iss = consumer key, sub =
username, aud = login URL, exp), refresh_token, password, and authorization_code with PKCE.
Errors use Salesforce's body `{"error": ..., "error_description": ...}` with HTTP 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jwt
from aiohttp import web

from bridge.devorg.state import LATEST_API_VERSION, User, epoch_ms

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SALESFORCE_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
CODE_TTL_SECONDS = 15 * 60  # Salesforce: an authorization code is valid for 15 minutes


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.error, "error_description": self.description}, status=self.status
        )


@dataclass
class AuthorizationCode:
    user_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    expires: float


class OAuth:
    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.state = server.state
        self.codes: dict[str, AuthorizationCode] = {}
        self._jwt_key = server.jwt_public_key

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/services/oauth2/token", self.token),
            web.get("/services/oauth2/authorize", self.authorize_page),
            web.post("/services/oauth2/authorize", self.authorize_submit),
            web.get("/services/oauth2/userinfo", self.userinfo),
            web.post("/services/oauth2/revoke", self.revoke),
            web.get("/id/{org_id}/{user_id}", self.identity),
        ]

    # -- token endpoint ---------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if not form and request.query:
            form = dict(request.query)  # Salesforce also accepts the parameters in the URL
        params = {k: str(v) for k, v in form.items()}
        grant = params.get("grant_type", "")
        try:
            if grant == JWT_GRANT:
                user = self._jwt_bearer(params)
                return self._token_response(user, grant, refresh=False)
            if grant == "password":
                self._check_client(params, secret_required=True)
                known = self.state.user_by_username(params.get("username", ""))
                password = params.get("password", "")
                # The password may carry the user's security token appended, as in Salesforce.
                if known is None or not password.startswith(known.password):
                    raise OAuthError("invalid_grant", "authentication failure")
                return self._token_response(known, grant, refresh=False)
            if grant == "refresh_token":
                client_id = self._check_client(params, secret_required=False)
                holder = self.state.refresh_token_user(params.get("refresh_token", ""), client_id)
                if holder is None:
                    raise OAuthError("invalid_grant", "expired access/refresh token")
                return self._token_response(holder, grant, refresh=False)
            if grant == "authorization_code":
                return self._authorization_code(params)
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        except OAuthError as exc:
            return exc.response()

    def _check_client(self, params: dict[str, str], *, secret_required: bool) -> str:
        client_id = params.get("client_id", "")
        if client_id != self.state.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        secret = params.get("client_secret")
        if secret is None and secret_required:
            raise OAuthError("invalid_client", "invalid client credentials")
        if secret is not None and not hmac.compare_digest(secret, self.state.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")
        return client_id

    def _jwt_bearer(self, params: dict[str, str]) -> User:
        assertion = params.get("assertion", "")
        if not assertion:
            raise OAuthError("invalid_request", "assertion is required")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.state.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        accepted = {self.server.base_url, *SALESFORCE_AUDIENCES}
        if not any(isinstance(a, str) and a.rstrip("/") in accepted for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            jwt.decode(
                assertion,
                self._jwt_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["exp"]},
            )
        except jwt.MissingRequiredClaimError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        exp = claims.get("exp")
        # The client signs exp with its own (real) clock, which cannot follow a simulated
        # advance of the org clock: compare with real time. Salesforce allows 3 min of skew.
        now = time.time()
        if not isinstance(exp, int | float) or exp + 180 < now:
            raise OAuthError("invalid_grant", "expired authorization code")
        user = self.state.user_by_username(str(claims.get("sub", "")))
        if user is None:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user

    def _authorization_code(self, params: dict[str, str]) -> web.Response:
        code = self.codes.pop(params.get("code", ""), None)
        if code is None or code.expires < time.monotonic():
            raise OAuthError("invalid_grant", "invalid authorization code")
        client_id = params.get("client_id", "")
        if client_id != code.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if params.get("redirect_uri", "") != code.redirect_uri:
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        verifier = params.get("code_verifier")
        if code.code_challenge is not None:
            if not verifier:
                raise OAuthError("invalid_grant", "invalid code verifier")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not hmac.compare_digest(challenge, code.code_challenge):
                raise OAuthError("invalid_grant", "invalid code verifier")
            if "client_secret" in params:
                self._check_client(params, secret_required=False)
        else:
            self._check_client(params, secret_required=True)
        user = self.state.users[code.user_id]
        return self._token_response(user, "authorization_code", refresh=True)

    def _token_response(self, user: User, grant: str, *, refresh: bool) -> web.Response:
        token = self.state.issue_token(user, "access", self.state.client_id)
        self.state.stats.login(user.id, "jwt_bearer" if grant == JWT_GRANT else grant)
        base = self.server.base_url
        identity = f"{base}/id/{self.state.org_id}/{user.id}"
        issued_at = epoch_ms(self.state.clock.now())
        signature = base64.b64encode(
            hmac.new(
                self.state.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        body: dict[str, Any] = {
            "access_token": token.token,
            "scope": "api refresh_token" if refresh else "api",
            "instance_url": base,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        }
        if refresh:
            body["refresh_token"] = self.state.issue_token(
                user, "refresh", self.state.client_id
            ).token
        return web.json_response(body)

    # -- web-server flow --------------------------------------------------------------------

    async def authorize_page(self, request: web.Request) -> web.Response:
        q = request.query
        problem = self._authorize_problem(q)
        if problem:
            return web.Response(status=400, text=problem)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items()
        )
        page = f"""<!doctype html><html><head><title>Allow Access?</title></head><body>
<h1>Allow Access?</h1>
<p>The connected app wants to access your local org (sfbridge devorg) data:
Access and manage your data (api); Perform requests at any time (refresh_token).</p>
<form method="post" action="/services/oauth2/authorize">{hidden}
<label>Username <input name="username" value="{html.escape(q.get("login_hint", ""))}"></label>
<label>Password <input name="password" type="password"></label>
<button name="decision" value="allow">Allow</button>
<button name="decision" value="deny">Deny</button>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    def _authorize_problem(self, q: Any) -> str | None:
        if q.get("response_type") != "code":
            return "error=unsupported_response_type: response_type must be code"
        if q.get("client_id") != self.state.client_id:
            return "error=invalid_client_id: client identifier invalid"
        if not q.get("redirect_uri"):
            return "error=redirect_uri_missing: redirect_uri must be provided"
        method = q.get("code_challenge_method")
        if q.get("code_challenge") and method not in (None, "S256"):
            return "error=invalid_request: code_challenge_method must be S256"
        return None

    async def authorize_submit(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        problem = self._authorize_problem(form)
        if problem:
            return web.Response(status=400, text=problem)
        redirect = form["redirect_uri"]
        sep = "&" if "?" in redirect else "?"
        extra = {"state": form["state"]} if "state" in form else {}
        if form.get("decision") == "deny":
            params = {
                "error": "access_denied",
                "error_description": "end-user denied authorization",
            }
            raise web.HTTPFound(redirect + sep + urlencode({**params, **extra}))
        user = self.state.user_by_username(form.get("username", ""))
        if user is None or not hmac.compare_digest(form.get("password", ""), user.password):
            return web.Response(
                status=401,
                text="Please check your username and password. If you still can't log in, "
                "contact your Salesforce administrator.",
            )
        code = "aPrx" + secrets.token_urlsafe(48)
        self.codes[code] = AuthorizationCode(
            user_id=user.id,
            client_id=form["client_id"],
            redirect_uri=redirect,
            code_challenge=form.get("code_challenge") or None,
            expires=time.monotonic() + CODE_TTL_SECONDS,
        )
        raise web.HTTPFound(redirect + sep + urlencode({"code": code, **extra}))

    # -- identity ---------------------------------------------------------------------------

    def _bearer_user(self, request: web.Request) -> User | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return None
        return self.state.user_for_token(token.strip())

    async def identity(self, request: web.Request) -> web.Response:
        """The identity URL: a Bearer header or the oauth_token parameter (jsforce sends both);
        `version` fills the {version} placeholder of the urls, as Salesforce does."""
        user = self._bearer_user(request)
        token = request.query.get("oauth_token")
        if user is None and token:
            user = self.state.user_for_token(token)
        if user is None or request.match_info["user_id"] != user.id:
            return web.Response(status=403, text="Bad_OAuth_Token")
        ident = self._identity(user)
        version = request.query.get("version", "")
        if version:
            if version.lower() == "latest":
                version = LATEST_API_VERSION
            ident["urls"] = {k: v.replace("{version}", version) for k, v in ident["urls"].items()}
        return web.json_response(ident)

    async def userinfo(self, request: web.Request) -> web.Response:
        user = self._bearer_user(request)
        if user is None:
            return web.Response(status=403, text="Bad_OAuth_Token")
        ident = self._identity(user)
        return web.json_response(
            {
                "sub": ident["id"],
                "user_id": user.id,
                "organization_id": self.state.org_id,
                "preferred_username": user.username,
                "name": user.name,
                "email": user.email,
                "active": True,
                "urls": ident["urls"],
            }
        )

    def _identity(self, user: User) -> dict[str, Any]:
        base = self.server.base_url
        v = "{version}"
        return {
            "id": f"{base}/id/{self.state.org_id}/{user.id}",
            "asserted_user": True,
            "user_id": user.id,
            "organization_id": self.state.org_id,
            "username": user.username,
            "nick_name": user.username.split("@")[0],
            "display_name": user.name,
            "email": user.email,
            "email_verified": True,
            "first_name": user.name.partition(" ")[0],
            "last_name": user.name.partition(" ")[2] or user.name,
            "timezone": "GMT",
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "urls": {
                "rest": f"{base}/services/data/v{v}/",
                "sobjects": f"{base}/services/data/v{v}/sobjects/",
                "query": f"{base}/services/data/v{v}/query/",
                "limits": f"{base}/services/data/v{v}/limits/",
                "profile": f"{base}/{user.id}",
            },
        }

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token") or request.query.get("token", ""))
        if token not in self.state.tokens:
            return web.json_response(
                {
                    "error": "unsupported_token_type",
                    "error_description": "this token type is not supported",
                },
                status=400,
            )
        self.state.revoke_token(token)
        return web.Response(status=200)
