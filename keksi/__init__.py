"""Keksi: a self-hosted cookie-consent and privacy-notice server."""

__version__ = "0.1.0"
