"""`flask ...` commands. Each docstring is the command's help text."""

from __future__ import annotations

import getpass
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import notices as notices_mod
from .store import get_store

notices_cli = AppGroup("notices", help="Check and publish the notice versions in notices/.")


def _notices_dir() -> Path:
    path = Path(current_app.config["NOTICES_DIR"])
    return path if path.is_absolute() else Path(current_app.root_path) / path


def _report(problems: list[notices_mod.Problem]) -> None:
    for problem in problems:
        click.secho(f"error: {problem}", fg="red", err=True)


@notices_cli.command("check")
def check_command() -> None:
    """Validate every notice source; exit 1 naming each file and problem.

    Example: flask notices check
    """
    result = notices_mod.check(_notices_dir(), current_app.config["LANGUAGES"], get_store())
    _report(result.problems)
    versions = {(s.slug, s.version) for s in result.sources}
    pending = {(s.slug, s.version) for s in result.unpublished}
    click.echo(f"{len(versions)} valid versions, {len(pending)} not yet published, "
               f"{len(result.problems)} problems.")
    if result.problems:
        raise SystemExit(1)


@notices_cli.command("publish")
@click.option("--by", "actor", default=None, help="Who publishes (default: the system user).")
def publish_command(actor: str | None) -> None:
    """Publish every valid version not yet published, in all languages at once.

    A version may be published before its effective date; it goes live on that
    date. Exits 1 if any file has a problem (valid versions are still published).

    Example: flask notices publish --by "Aino Virtanen"
    """
    actor = actor or f"cli:{getpass.getuser()}"
    published, problems = notices_mod.publish(
        _notices_dir(), current_app.config["LANGUAGES"], get_store(), actor)
    _report(problems)
    versions = sorted({(s.slug, s.version) for s in published})
    for slug, version in versions:
        click.echo(f"published {slug} {version}")
    click.echo(f"{len(versions)} versions published." if versions else "Nothing new to publish.")
    if problems:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(notices_cli)
