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


def _positive(name: str, value: float) -> float:
    if not 0 < value < float("inf"):
        from bridge.errors import ConfigError

        raise ConfigError(f"SFBRIDGE_{name} must be a positive number, not {value}")
    return value


def create_app(settings: Settings | None = None, config: Mapping[str, Any] | None = None) -> Flask:
    """Create the web app: reviewer UI, integration reports, JSON API v1, health and metrics."""
    # Imported here, not at the top: importing any bridge module runs this file first, and the
    # worker, the stream and the pure core must not load Flask and the web package for it.
    from flask import Flask

    from bridge import defaults, vocabulary
    from bridge.config import Settings
    from bridge.web import (  # api_outbound adds its routes to api's blueprint
        account,
        admin,
        api,
        api_outbound,  # noqa: F401
        apiref,
        auth,
        export,
        extensions,
        health,
        inputs,
        integration,
        openapi,
        org_pages,
        referral_pages,
        reports,
        review,
        security,
        serialize,
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
        # Sessions (ASVS 3.3.1/3.3.2) and sign-in throttling: bridge/defaults.py says what each is.
        IDLE_TIMEOUT_SECONDS=_positive("SESSION_IDLE_MINUTES", defaults.SESSION_IDLE_MINUTES) * 60,
        SESSION_MAX_SECONDS=_positive("SESSION_MAX_HOURS", defaults.SESSION_MAX_HOURS) * 3600,
        LOGIN_FREE_ATTEMPTS=defaults.LOGIN_FREE_ATTEMPTS,
        LOGIN_ADDRESS_FREE_ATTEMPTS=defaults.LOGIN_ADDRESS_FREE_ATTEMPTS,
        LOGIN_FIRST_DELAY_SECONDS=defaults.LOGIN_FIRST_DELAY_SECONDS,
        LOGIN_MAX_DELAY_SECONDS=defaults.LOGIN_MAX_DELAY_SECONDS,
        LOGIN_FORGET_SECONDS=defaults.LOGIN_FORGET_SECONDS,
        DEVICE_COOKIE_DAYS=defaults.DEVICE_COOKIE_DAYS,
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

    app.json = serialize.StrictJSONProvider(app)
    app.url_map.converters["int"] = RowIdConverter
    app.jinja_env.globals["vocab"] = vocabulary  # the domain's lists, for templates
    extensions.init_app(app, settings)
    security.init_app(app)
    inputs.init_app(app)
    auth.init_app(app)
    health.init_app(app)
    api.init_app(app)
    for bp in (
        auth.bp,
        account.bp,
        review.bp,
        referral_pages.bp,
        export.bp,
        integration.bp,
        reports.bp,
        admin.bp,
        org_pages.bp,
        api.bp,
        openapi.bp,
        apiref.bp,
        health.bp,
    ):
        app.register_blueprint(bp)
    app.add_url_rule("/", endpoint="index", view_func=review.dashboard)
    return app
