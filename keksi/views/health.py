"""A health check for load balancers and monitoring: GET /healthz."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..store import get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the database answers and its schema is current, else 503."""
    try:
        pending = get_store().pending_migrations()
    except Exception as exc:  # any failure to read the database means unhealthy
        return jsonify(status="error", database=str(exc)), 503
    if pending:
        return jsonify(status="error", database="ok", pending_migrations=pending), 503
    response = jsonify(status="ok", database="ok")
    response.headers["Cache-Control"] = "no-store"
    return response
