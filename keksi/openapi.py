"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Tests validate real responses against these schemas, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from . import __version__

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_TIME = {"type": "string", "format": "date-time"}
_URL = {"type": "string", "format": "uri"}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Error")}


_LANG = {"name": "lang", "in": "query", "required": False,
         "schema": {"type": "string", "examples": ["fi", "sv", "en"]},
         "description": "A configured language; default: the browser's, else the site's or server's default."}

_NOTICE_SEEN = {"type": "object", "required": ["slug", "version", "sha256", "url"],
                "properties": {"slug": {"type": "string"}, "version": _DATE, "sha256": _HEX64, "url": _URL}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "status"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "The request field that was wrong."},
            "message": {"type": "string", "description": "What was wrong, in words a person can act on."},
            "status": {"type": "integer"},
        },
    },
    "Notice": {
        "type": "object",
        "required": ["slug", "lang", "title", "version", "effective_date", "url", "current_url",
                     "sha256", "material", "latest_material_version", "upcoming"],
        "properties": {
            "slug": {"type": "string"},
            "lang": {"type": "string"},
            "title": {"type": "string"},
            "version": _DATE,
            "effective_date": _DATE,
            "url": _URL,
            "current_url": _URL,
            "sha256": _HEX64,
            "material": {"type": "boolean"},
            "latest_material_version": {"oneOf": [_DATE, {"type": "null"}]},
            "upcoming": {"type": "array", "items": {
                "type": "object", "required": ["version", "material", "url"],
                "properties": {"version": _DATE, "material": {"type": "boolean"}, "url": _URL}}},
        },
    },
    "LinkedNotice": {
        "type": "object",
        "required": ["slug", "title", "version", "last_updated", "url", "sha256",
                     "latest_material_version", "diff_url"],
        "properties": {
            "slug": {"type": "string"}, "title": {"type": "string"}, "version": _DATE,
            "effective_date": _DATE, "last_updated": {"type": "string"}, "url": _URL,
            "current_url": _URL, "sha256": _HEX64, "material": {"type": "boolean"},
            "latest_material_version": {"oneOf": [_DATE, {"type": "null"}]},
            "change_summary": {"type": ["string", "null"],
                               "description": "The summary of the latest material version."},
            "diff_url": {"type": "string", "description": "Replace {from} with the version the visitor saw."},
        },
    },
    "SiteConfig": {
        "type": "object",
        "required": ["site", "name", "lang", "languages", "banner_hash", "choice_hash", "consent_days",
                     "texts", "categories", "notices", "cookies", "endpoint", "receipt_url", "timezone",
                     "style"],
        "properties": {
            "site": {"type": "string"},
            "timezone": {"type": "string", "description": "KEKSI_TIMEZONE, in which notice versions take "
                                                          "effect (for dating a stored choice)."},
            "name": {"type": "string"},
            "lang": {"type": "string"},
            "languages": {"type": "array", "items": {"type": "string"}},
            "banner_hash": _HEX64,
            "choice_hash": dict(_HEX64, description="What the visitor consents to, in every language: "
                                                    "the widget asks again when it changes."),
            "consent_days": {"type": "integer", "minimum": 1, "maximum": 395},
            "refusal_days": {"type": "integer", "minimum": 183,
                             "description": "How long a refusal of every optional category lasts: "
                                            "consent_days, but at least 183 days (6 months)."},
            "cookie_domain": {"type": ["string", "null"]},
            "texts": {"type": "object", "additionalProperties": {"type": "string"}},
            "categories": {"type": "array", "items": {
                "type": "object",
                "required": ["id", "required", "label", "purpose", "services"],
                "properties": {
                    "id": {"type": "string"}, "required": {"type": "boolean"},
                    "label": {"type": "string"}, "purpose": {"type": "string"},
                    "services": {"type": "array", "items": {
                        "type": "object", "required": ["name", "provider", "cookies"],
                        "properties": {
                            "name": {"type": "string"}, "provider": {"type": "string"},
                            "cookies": {"type": "array", "items": {
                                "type": "object", "required": ["name", "provider", "purpose", "duration"],
                                "properties": {k: {"type": "string"} for k in
                                               ("name", "provider", "purpose", "duration")}}}}}}}}},
            "notices": {"type": "object", "required": ["privacy", "cookies"],
                        "properties": {"privacy": {"$ref": "#/components/schemas/LinkedNotice"},
                                       "cookies": {"$ref": "#/components/schemas/LinkedNotice"}}},
            "cookies": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        "description": "Category id to the cookie names (a trailing * is a prefix) to delete when refused."},
            "endpoint": _URL,
            "receipt_url": {"type": "string", "description": "Replace {consent_id}."},
            "style": {"type": "string", "description": "The site's look (its theme, else the default) "
                                                       "as CSS for the widget's shadow root; not "
                                                       "covered by banner_hash."},
            "signals": dict(_URL, description="Only for a site that declares a catalogue service with a "
                            "consent API: /widget/v1/signals.js with each API and the category its "
                            "service is declared in as the query, such as ?clarity=analytics&uet=marketing."),
        },
    },
    "ConsentRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["site", "event_id", "action", "choices", "notice_version", "banner_hash", "lang",
                     "ui_surface"],
        "properties": {
            "site": {"type": "string", "maxLength": 64},
            "event_id": {"type": "string", "format": "uuid", "description": "Made once per choice; a retry reuses it."},
            "subject_id": {"oneOf": [_HEX32, {"type": "null"}],
                           "description": "From an earlier answer; absent (or null) on a first visit. "
                                          "One the server did not give (or has erased) is replaced by a "
                                          "new one (see the answer)."},
            "action": {"enum": ["accept_all", "reject_all", "custom", "withdraw"]},
            "choices": {"type": "object", "additionalProperties": {"type": "boolean"},
                        "description": "Every category of the banner the visitor answered (banner_hash), "
                                       "which may differ from the site's now; necessary must be true."},
            "notice_version": _DATE,
            "cookie_notice_version": {"oneOf": [_DATE, {"type": "null"}],
                                      "description": "The cookie notice version in effect when the visitor "
                                                     "chose; absent (or null) from older widgets."},
            "banner_hash": _HEX64,
            "lang": {"type": "string"},
            "ui_surface": {"enum": ["banner", "panel", "reopened"]},
            "page": {"type": "string", "pattern": "^(/[^\\u0000-\\u001f\\u007f-\\u009f]*)?$",
                     "description": "The page's path; its query and fragment are dropped and it is cut to "
                                    "512 characters, never refused for its length. Kept only with "
                                    "KEKSI_STORE_PAGE, checked either way."},
            "widget_version": {"type": "string", "maxLength": 64, "pattern": "^[0-9A-Za-z._-]*$"},
            "gpc": {"type": "boolean"},
        },
    },
    "ConsentAnswer": {
        "type": "object",
        "required": ["consent_id", "subject_id", "recorded_at", "valid_until", "receipt_url"],
        "properties": {
            "consent_id": _HEX32, "subject_id": _HEX32, "recorded_at": _TIME, "valid_until": _TIME,
            "receipt_url": _URL,
        },
    },
    "Receipt": {
        "type": "object",
        "required": ["consent_id", "site", "action", "choices", "recorded_at", "valid_until", "lang",
                     "ui_surface", "notice", "cookie_notice", "banner_hash", "gpc", "receipt_url",
                     "banner_url", "change_urls", "recorded_at_text", "valid_until_text"],
        "properties": {
            "consent_id": _HEX32, "site": {"type": "string"},
            "action": {"enum": ["accept_all", "reject_all", "custom", "withdraw"]},
            "choices": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "recorded_at": _TIME,
            "valid_until": {"oneOf": [_TIME, {"type": "null"}],
                            "description": "Null for a withdrawal: it consents to nothing that expires."},
            "recorded_at_text": {"type": "string", "description": "As the receipt's language writes it, "
                                                                  "in KEKSI_TIMEZONE with its offset."},
            "valid_until_text": {"type": ["string", "null"]},
            "banner_url": {**_URL, "description": "The banner exactly as shown with this choice."},
            "change_urls": {"type": "array", "items": _URL,
                            "description": "The page where the choice was made, on each of the site's "
                                           "origins, with #keksi-settings, which opens the widget's panel."},
            "lang": {"type": "string"},
            "ui_surface": {"enum": ["banner", "panel", "reopened"]},
            "notice": _NOTICE_SEEN,
            "cookie_notice": {"oneOf": [_NOTICE_SEEN, {"type": "null"}],
                              "description": "Null for records made before it was recorded."},
            "banner_hash": _HEX64, "gpc": {"type": "boolean"}, "receipt_url": _URL,
        },
    },
    "BannerVersion": {
        "type": "object",
        "required": ["hash", "site", "lang", "first_served_at", "content", "url"],
        "properties": {"hash": _HEX64, "site": {"type": "string"}, "lang": {"type": "string"},
                       "first_served_at": _TIME, "url": _URL,
                       "content": {"type": "object", "description": "What banner_hash covers, as served."}},
    },
    "WidgetBuild": {
        "type": "object",
        "required": ["version", "file", "sha256", "first_served_at", "script", "url"],
        "properties": {"version": {"type": "string"},
                       "file": {"type": "string", "enum": ["consent.js", "signals.js"],
                                "description": "The widget itself, or the other vendors' consent signals it loads."},
                       "sha256": _HEX64, "first_served_at": _TIME,
                       "script": {"type": "string", "description": "The exact script served."}, "url": _URL},
    },
}

_LEGAL_ONLY = {"401": _error("Not signed in to the admin"), "403": _error("Not a legal or admin user")}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Keksi API",
        "version": __version__,
        "description": "Notices, the consent widget's configuration, and proof of consent.",
    },
    "servers": [{"url": "/api/v1"}],
    "paths": {
        "/notices/{slug}": {
            "get": {
                "summary": "The current version of a notice",
                "parameters": [{"name": "slug", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$"}}, _LANG],
                "responses": {"200": {"description": "The notice", "content": _json("Notice")},
                              "304": {"description": "Not modified"},
                              "400": _error("Unknown language"), "404": _error("Unknown notice")},
            }
        },
        "/sites/{site}/config": {
            "get": {
                "summary": "Everything the widget needs for one site and language",
                "parameters": [{"name": "site", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "lang", "in": "query", "required": False,
                                "schema": {"type": "string", "examples": ["fi", "sv", "en"]},
                                "description": "A language code; one not served here gives the site's "
                                               "default language (the answer's `lang`)."}],
                "responses": {"200": {"description": "The configuration", "content": _json("SiteConfig")},
                              "304": {"description": "Not modified"},
                              "400": _error("Not a language code"), "404": _error("Unknown site")},
            }
        },
        "/consents": {
            "post": {
                "summary": "Record one choice",
                "description": "Accepts the JSON body also as text/plain (navigator.sendBeacon). At most "
                               "4096 bytes. The request's Origin must be one of the site's origins.",
                "parameters": [{"name": "cookie", "in": "query", "required": False, "schema": {"enum": ["1"]},
                                "description": "First-party mode: when the request's Origin is this API's own "
                                               "origin, the 201 sets the keksi_consent cookie (Set-Cookie)."}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ConsentRequest"}},
                    "text/plain": {"schema": {"type": "string"}}}},
                "responses": {
                    "201": {"description": "Recorded and committed (a retried event_id gets the same answer)",
                            "content": _json("ConsentAnswer")},
                    "400": _error("Malformed; `field` names what is wrong"),
                    "403": _error("The Origin is not one of the site's"),
                    "404": _error("Unknown site"),
                    "409": _error("The event_id was used for another site, or for a different choice"),
                    "413": _error("Body over 4096 bytes"),
                    "429": _error("Too many posts from this address; see Retry-After"),
                    "503": _error("The store is busy; retry after Retry-After seconds"),
                },
            }
        },
        "/consents/{consent_id}": {
            "get": {
                "summary": "A visitor's receipt",
                "parameters": [{"name": "consent_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The receipt", "content": _json("Receipt")},
                              "404": _error("No such consent")},
            }
        },
        "/banners/{banner_hash}": {
            "get": {
                "summary": "A banner version in full, by the hash consent records name",
                "security": [{"adminSession": []}],
                "parameters": [{"name": "banner_hash", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The banner version", "content": _json("BannerVersion")},
                              **_LEGAL_ONLY, "404": _error("Never served")},
            }
        },
        "/widget-builds/{widget_version}": {
            "get": {
                "summary": "A widget build's exact script, by the widget_version consent records name",
                "security": [{"adminSession": []}],
                "parameters": [{"name": "widget_version", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The widget build", "content": _json("WidgetBuild")},
                              **_LEGAL_ONLY, "404": _error("Never served")},
            }
        },
    },
    "components": {"schemas": SCHEMAS, "securitySchemes": {"adminSession": {
        "type": "apiKey", "in": "cookie", "name": "session",
        "description": "The admin's session cookie, after signing in at /admin/login (legal or admin)."}}},
}
