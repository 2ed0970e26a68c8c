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


def create_app(settings: Settings | None = None, config: Mapping[str, Any] | None = None) -> Flask:
    """Create the web app: reviewer UI, integration reports, JSON API v1, health and metrics."""
    # Imported here, not at the top: importing any bridge module runs this file first, and the
    # worker, the stream and the pure core must not load Flask and the web package for it.
    from flask import Flask

    from bridge import vocabulary
    from bridge.config import Settings
    from bridge.web import (  # api_outbound adds its routes to api's blueprint
        admin,
        api,
        api_outbound,  # noqa: F401
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
        IDLE_TIMEOUT_SECONDS=30 * 60,
        LOGIN_MAX_FAILURES=5,  # per account, then locked for LOGIN_LOCKOUT_SECONDS
        LOGIN_LOCKOUT_SECONDS=15 * 60,
        LOGIN_IP_MAX_FAILURES=20,  # per client address within LOGIN_IP_WINDOW_SECONDS
        LOGIN_IP_WINDOW_SECONDS=15 * 60,
        PASSWORD_HASH_METHOD="scrypt",  # noqa: S106 - a hash method name
        PAGE_SIZE=25,
        READY_MAX_LAG_SECONDS=300,
        # Behind a reverse proxy that sets X-Forwarded-For/-Proto (so cookies get Secure and
        # throttling sees the client's address): SFBRIDGE_TRUST_PROXY=1.
        TRUST_PROXY=os.environ.get("SFBRIDGE_TRUST_PROXY", "").lower() in ("1", "true", "yes"),
    )
    if config:
        app.config.update(config)  # e.g. DEMO_CHANGES, set by `sfbridge demo` (bridge.devorg.demo)

    app.url_map.converters["int"] = RowIdConverter
    app.jinja_env.globals["vocab"] = vocabulary  # the domain's lists, for templates
    extensions.init_app(app, settings)
    security.init_app(app)
    auth.init_app(app)
    api.init_app(app)
    for bp in (auth.bp, review.bp, reports.bp, admin.bp, api.bp, openapi.bp, health.bp):
        app.register_blueprint(bp)
    app.add_url_rule("/", endpoint="index", view_func=review.dashboard)
    return app
