"""Keksi's application factory: configuration, extensions, blueprints, CLI."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any, Mapping

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from keksi import cli, http, i18n, pagecache, retention, settings, store
from keksi.views import admin, admin_audit, admin_notices, api, health, site
from keksi.views import widget as widget_views
from keksi.views import admin_proof, admin_records, admin_scans, admin_sites, admin_users

csrf = CSRFProtect()


def _secret_key(app: Flask) -> str:
    """A random key made once and kept in the instance folder, so every worker shares it."""
    path = os.path.join(app.instance_path, "secret_key")
    os.makedirs(app.instance_path, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as existing:
            return existing.read().strip()
    with os.fdopen(fd, "w") as new:
        key = secrets.token_hex(32)
        new.write(key)
    return key


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the Keksi app; `test_config` overrides the settings read from the environment."""
    app = Flask(__name__, static_folder="keksi/static", static_url_path="/static",
                template_folder="templates")
    config = settings.from_environ(os.environ)
    if test_config:
        config.update(test_config)
    app.config.update(config)
    app.config.setdefault("MAX_CONTENT_LENGTH", 64 * 1024)
    # Flask answers a Host header that is not one of these with 400, before any view runs.
    app.config["TRUSTED_HOSTS"] = list(app.config["SERVER_NAMES"]) or None  # "" (the default): any
    if not app.config["SECRET_KEY"]:
        if store.is_url(app.config["DATABASE"]):
            # Every host must sign sessions and CSRF tokens alike; a key made in one host's instance
            # folder is unknown to the others.
            raise SystemExit("KEKSI_SECRET_KEY must be set when KEKSI_DATABASE is a PostgreSQL URL")
        app.config["SECRET_KEY"] = _secret_key(app)
    if app.config["DEFAULT_LANGUAGE"] not in app.config["LANGUAGES"]:
        raise SystemExit("KEKSI_DEFAULT_LANGUAGE must be one of KEKSI_LANGUAGES")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["HTTPS"],
        # The cookie may live as long as a session can; the store ends it sooner (keksi.auth).
        PERMANENT_SESSION_LIFETIME=timedelta(hours=app.config["SESSION_HOURS"]),
    )

    app.config["BUILD_ID"] = http.build_id(app.root_path)
    app.wsgi_app = pagecache.PageCache(app.wsgi_app, app)
    if app.config["TRUSTED_PROXIES"]:
        # Only the configured number of proxies may set the client address.
        proxies = app.config["TRUSTED_PROXIES"]
        # X-Forwarded-Prefix: first-party mode serves Keksi under a path of the site's own origin.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies,
                                x_prefix=proxies)
    store.init_app(app)
    i18n.init_app(app)
    http.init_app(app)
    csrf.init_app(app)
    retention.init_app(app)

    # Checked by Origin allow-list instead; it reads no cookie (in first-party mode it may set one).
    csrf.exempt(api.record_consent)
    app.register_blueprint(api.bp)
    app.register_blueprint(site.bp)
    app.register_blueprint(widget_views.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin_sites.bp)
    app.register_blueprint(admin_scans.bp)
    app.register_blueprint(admin_proof.bp)
    app.register_blueprint(admin_users.bp)
    app.register_blueprint(admin_records.bp)
    app.register_blueprint(admin_notices.bp)
    app.register_blueprint(admin_audit.bp)
    app.register_blueprint(health.bp)
    admin.slash_redirects(app)
    cli.init_app(app)
    return app
