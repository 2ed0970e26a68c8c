"""sfbridge: the bridge between referral data and Salesforce.

`create_app()` is the web application factory (the flaskr pattern): settings come from the
environment unless given, every resource registers itself with `init_app`, and each feature is
one blueprint in `bridge.web`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from bridge.config import Settings

__version__ = "0.1.0"


def trust_proxy() -> bool:
    """SFBRIDGE_TRUST_PROXY: a reverse proxy sets X-Forwarded-For/-Proto and is the only way in
    (gunicorn's `forwarded_allow_ips` and the app's ProxyFix both follow it)."""
    return os.environ.get("SFBRIDGE_TRUST_PROXY", "").lower() in ("1", "true", "yes")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        from bridge.errors import ConfigError

        raise ConfigError(f"{name} must be a positive number, not {raw!r}")
    return value


def create_app(settings: Settings | None = None, config: Mapping[str, Any] | None = None) -> Flask:
    """Create the web app: reviewer UI, integration reports, JSON API v1, health and metrics."""
    # Imported here, not at the top: importing any bridge module runs this file first, and the
    # worker, the stream and the pure core must not load Flask and the web package for it.
    from flask import Flask

    from bridge import vocabulary
    from bridge.config import Settings
    from bridge.web import (
        account,
        admin,
        api,
        auth,
        extensions,
        health,
        openapi,
        reports,
        review,
        security,
    )
    from bridge.web.security import RowIdConverter

    settings = settings or Settings.from_env()
    app = Flask("bridge.web", instance_path=None, static_folder="static")
    app.config.from_mapping(
        SECRET_KEY=extensions.secret_key(settings),
        SESSION_COOKIE_NAME="sfbridge_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,  # also set per request when the request came over HTTPS
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        # Sessions (ASVS 3.3.1/3.3.2): ended after this long unused, and at the latest after
        # SESSION_MAX_SECONDS however busy.
        IDLE_TIMEOUT_SECONDS=_env_number("SFBRIDGE_SESSION_IDLE_MINUTES", 30) * 60,
        SESSION_MAX_SECONDS=_env_number("SFBRIDGE_SESSION_MAX_HOURS", 12) * 3600,
        # Sign-in throttling (bridge.throttle): free attempts per account (or device) and per
        # client address, then a wait that doubles from the first delay up to the maximum.
        LOGIN_FREE_ATTEMPTS=5,
        LOGIN_ADDRESS_FREE_ATTEMPTS=20,
        LOGIN_FIRST_DELAY_SECONDS=30,
        LOGIN_MAX_DELAY_SECONDS=15 * 60,
        LOGIN_FORGET_SECONDS=6 * 3600,
        DEVICE_COOKIE_DAYS=180,
        # /metrics and the detailed /readyz: a token with the metrics:read scope, or a client
        # address in these networks (comma-separated CIDRs), e.g. "10.0.0.0/8,127.0.0.1/32".
        MONITOR_NETWORKS=os.environ.get("SFBRIDGE_MONITOR_NETWORKS", ""),
        PASSWORD_HASH_METHOD="scrypt",  # noqa: S106 - a hash method name
        PAGE_SIZE=25,
        READY_MAX_LAG_SECONDS=300,
        # Behind a reverse proxy that sets X-Forwarded-For/-Proto (so cookies get Secure and
        # throttling sees the client's address): SFBRIDGE_TRUST_PROXY=1.
        TRUST_PROXY=trust_proxy(),
    )
    if config:
        app.config.update(config)  # e.g. DEMO_CHANGES, set by `sfbridge demo` (bridge.devorg.demo)

    app.url_map.converters["int"] = RowIdConverter
    app.jinja_env.globals["vocab"] = vocabulary  # the domain's lists, for templates
    extensions.init_app(app, settings)
    security.init_app(app)
    auth.init_app(app)
    health.init_app(app)
    api.init_app(app)
    for bp in (
        auth.bp,
        account.bp,
        review.bp,
        reports.bp,
        admin.bp,
        api.bp,
        openapi.bp,
        health.bp,
    ):
        app.register_blueprint(bp)
    app.add_url_rule("/", endpoint="index", view_func=review.dashboard)
    return app
