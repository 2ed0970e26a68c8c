"""End to end against the local org over real HTTPS: JWT and refresh-token connect, the
web-server flow with PKCE through its login page, re-authentication after the org expires
every session, retries of injected faults, and `sfbridge org connect` as a real process.
"""

from __future__ import annotations

import html.parser
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.metrics import SF_API_CALLS, SF_API_ERRORS, count_calls_with
from bridge.orgs import open_org
from bridge.salesforce import oauth
from bridge.salesforce.connection import (
    OrgCredentials,
    SalesforceOrg,
    build_session,
    connect,
    connect_with_token,
)
from bridge.salesforce.errors import (
    SalesforceError,
    SalesforcePermanentError,
    SalesforceUsageError,
)
from bridge.store import Store
from bridge.vault import Vault, generate_key
from tests.services import free_port

pytestmark = pytest.mark.e2e


def _user(devorg: Any, role: str) -> dict[str, str]:
    return dict(devorg.info["users"][role])


def jwt_creds(devorg: Any) -> OrgCredentials:
    info = devorg.info
    return OrgCredentials(
        login_url=info["login_url"],
        client_id=info["client_id"],
        username=_user(devorg, "integration")["username"],
        private_key_pem=Path(info["jwt_private_key_path"]).read_text(),
        ca_bundle=info["ca_path"],
        api_version=info["api_version"],
    )


class _FormParser(html.parser.HTMLParser):
    """The hidden inputs and the action of the login page's form."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        if tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")


def log_in_as_a_person(devorg: Any, authorize_url: str, role: str = "sales") -> str:
    """What a browser does: open the authorize URL, log in, allow; returns the redirect."""
    browser = devorg.session()
    page = browser.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    form = _FormParser()
    form.feed(page.text)
    user = _user(devorg, role)
    data = {**form.hidden, "username": user["username"], "password": user["password"]}
    data["decision"] = "allow"
    answer = browser.post(
        devorg.base_url + (form.action or "/services/oauth2/authorize"),
        data=data,
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code in (301, 302, 303), answer.text
    return str(answer.headers["Location"])


def follow_to_listener(location: str) -> None:
    url = location.replace("//localhost:", "//127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200


def web_flow_org(devorg: Any, secret: str | None = None) -> SalesforceOrg:
    info = devorg.info
    redirect_uri = f"http://localhost:{free_port()}/OauthRedirect"
    flow = oauth.WebFlow.start(
        login_url=info["login_url"], client_id=info["client_id"], redirect_uri=redirect_uri
    )
    with oauth.CallbackListener(redirect_uri) as listener:
        follow_to_listener(log_in_as_a_person(devorg, flow.authorize_url))
        params = listener.wait(timeout=10)
    http = build_session(info["login_url"], info["ca_path"])
    # With the consumer secret, the response's signature is verified as well.
    token = flow.exchange(http, flow.code_from_callback(params), client_secret=secret)
    assert token.signature or not secret
    creds = OrgCredentials(
        login_url=info["login_url"],
        client_id=info["client_id"],
        refresh_token=token.refresh_token,
        client_secret=secret,
        ca_bundle=info["ca_path"],
        api_version=info["api_version"],
    )
    return connect_with_token(creds, token, http)


# ---- in-process ---------------------------------------------------------------------------------


def test_jwt_connect_to_the_local_org(devorg):
    org = connect(jwt_creds(devorg))
    integration = _user(devorg, "integration")
    assert org.org_id == devorg.info["org_id"]
    assert org.user_id == integration["id"]
    assert org.instance_url == devorg.info["instance_url"].rstrip("/")
    assert org.username == integration["username"]
    assert org.http.verify == devorg.info["ca_path"]


def test_reauthentication_after_the_org_expires_the_session(devorg):
    org = connect(jwt_creds(devorg))
    before = org.access_token
    devorg.control("expire-tokens", {"user": "integration"})
    result = org.call(org.sf.query, "SELECT Id, Username FROM User")
    assert result["totalSize"] >= 2
    assert org.access_token != before


@pytest.mark.parametrize("with_secret", [False, True], ids=["pkce-only", "pkce+secret"])
def test_web_server_flow_with_pkce_then_refresh_token_connect(devorg, with_secret):
    web = web_flow_org(devorg, devorg.info["client_secret"] if with_secret else None)
    sales = _user(devorg, "sales")
    assert (web.org_id, web.user_id, web.username) == (
        devorg.info["org_id"],
        sales["id"],
        sales["username"],
    )
    assert web.refresh_token
    # Later, another process opens the org with the stored refresh token alone.
    again = connect(web.credentials)
    assert again.user_id == sales["id"]
    devorg.control("expire-tokens", {"user": "sales"})
    assert again.call(again.sf.query, "SELECT Id FROM User")["totalSize"] >= 2


def test_a_wrong_verifier_is_refused_by_the_local_org(devorg):
    info = devorg.info
    redirect_uri = f"http://localhost:{free_port()}/OauthRedirect"
    flow = oauth.WebFlow.start(
        login_url=info["login_url"], client_id=info["client_id"], redirect_uri=redirect_uri
    )
    location = log_in_as_a_person(devorg, flow.authorize_url)
    impostor = oauth.WebFlow(
        login_url=flow.login_url,
        client_id=flow.client_id,
        redirect_uri=flow.redirect_uri,
        state=flow.state,
        code_verifier=oauth.new_code_verifier(),
    )
    with pytest.raises(SalesforceUsageError) as raised:
        impostor.exchange(
            build_session(info["login_url"], info["ca_path"]), flow.code_from_callback(location)
        )
    assert raised.value.code in ("invalid_grant", "invalid_request")


def test_errors_from_the_local_org_are_classified(devorg):
    org = connect(jwt_creds(devorg))
    with pytest.raises(SalesforcePermanentError) as raised:
        org.call(org.sf.Lead.create, {"Company": "Acme"})
    assert raised.value.code == "REQUIRED_FIELD_MISSING"
    assert "LastName" in raised.value.fields


def test_an_injected_503_on_a_read_is_retried(devorg):
    org = connect(jwt_creds(devorg))
    devorg.control(
        "faults",
        {"kind": "status", "status": 503, "path": "/services/data/", "method": "GET", "count": 1},
    )
    try:
        assert org.call(org.sf.query, "SELECT Id FROM User")["totalSize"] >= 2
    finally:
        devorg.session().delete(f"{devorg.base_url}/__devorg__/faults", timeout=10)


def test_no_secret_reaches_any_log_over_real_http(devorg, caplog):
    for name in ("", "urllib3", "urllib3.connectionpool", "requests", "simple_salesforce"):
        caplog.set_level(logging.DEBUG, logger=name)
    creds = jwt_creds(devorg)
    org = connect(creds)
    tokens = [org.access_token]
    devorg.control("expire-tokens", {"user": "integration"})
    org.call(org.sf.query, "SELECT Id FROM User")
    tokens.append(org.access_token)
    web = web_flow_org(devorg)
    tokens += [web.access_token, web.refresh_token or ""]

    assert "connectionpool" in caplog.text  # urllib3 really logged the requests
    key_lines = [
        line for line in (creds.private_key_pem or "").splitlines() if not line.startswith("-----")
    ]
    secrets = [*tokens, *key_lines, devorg.info["client_secret"]]
    secrets.append(_user(devorg, "sales")["password"])
    for secret in secrets:
        assert secret and secret not in caplog.text


# ---- the CLI as a real process ------------------------------------------------------------------


@pytest.fixture
def cli_env(devorg: Any, tmp_path: Path) -> dict[str, str]:
    info = devorg.info
    db = tmp_path / "sfbridge.db"
    Store(f"sqlite:///{db}").upgrade()
    key_file = tmp_path / "integration.key"  # a copy: the test removes it after connecting
    key_file.write_text(Path(info["jwt_private_key_path"]).read_text())
    config = tmp_path / "sfbridge.yaml"
    config.write_text(
        f"""orgs:
  dev:
    login_url: {info["login_url"]}
    client_id: {info["client_id"]}
    username: {_user(devorg, "integration")["username"]}
    private_key_file: {key_file}
    ca_bundle: {info["ca_path"]}
    programs: [{{key: main, name: Main}}]
    receiver: {{program: main}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFBRIDGE_")}
    env.update(
        SFBRIDGE_DATABASE_URL=f"sqlite:///{db}",
        SFBRIDGE_CONFIG=str(config),
        SFBRIDGE_ENCRYPTION_KEYS=generate_key(),
        SFBRIDGE_INSTANCE_DIR=str(tmp_path / "instance"),
    )
    return env


def _sfbridge() -> str:
    return str(Path(sys.executable).with_name("sfbridge"))


def test_cli_org_connect_with_jwt_as_a_process(devorg, cli_env, redis_client):
    done = subprocess.run(
        [_sfbridge(), "org", "connect", "dev"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    integration = _user(devorg, "integration")
    assert (
        f"connected 'dev': org {devorg.info['org_id']}, user {integration['username']} "
        f"({integration['id']})"
    ) in done.stdout

    # Another process opens the stored connection: no key file needed any more.
    store = Store(cli_env["SFBRIDGE_DATABASE_URL"])
    config = load_config(cli_env["SFBRIDGE_CONFIG"]).orgs["dev"]
    Path(config.private_key_file or "").unlink()
    count_calls_with(redis_client)  # as `sfbridge stream/poll/worker` do at start
    try:
        org = open_org(store, Vault([cli_env["SFBRIDGE_ENCRYPTION_KEYS"]]), "dev", config)
        assert org.call(org.sf.query, "SELECT Id FROM User")["totalSize"] >= 2
        with pytest.raises(SalesforceError):
            org.request("GET", "sobjects/Lead/00Q000000000000AAA")
    finally:
        count_calls_with(None)
        store.dispose()
    # /metrics reads these: two API calls by this org, one of them an error.
    assert redis_client.hget(SF_API_CALLS, "dev") == b"2"
    assert redis_client.hget(SF_API_ERRORS, "dev") == b"1"


def test_cli_org_connect_web_as_a_process(devorg, cli_env):
    redirect_uri = f"http://localhost:{free_port()}/OauthRedirect"
    proc = subprocess.Popen(
        [_sfbridge(), "org", "connect", "dev", "--web", "--redirect-uri", redirect_uri,
         "--timeout", "60"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        authorize_url = ""
        for line in proc.stdout:
            if line.startswith(devorg.info["login_url"]):
                authorize_url = line.strip()
                break
        assert authorize_url, proc.stderr.read() if proc.stderr else ""
        follow_to_listener(log_in_as_a_person(devorg, authorize_url))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    sales = _user(devorg, "sales")
    assert f"user {sales['username']} ({sales['id']})" in out
