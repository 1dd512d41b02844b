"""``kizuna journeys apply`` and ``kizuna journeys export``: the thin edge over ``run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from kizuna.journeys_as_code.document import Kind

if TYPE_CHECKING:
    from kizuna.journeys_as_code.remote import Remote

journeys_app = typer.Typer(
    help="Segments, templates and journeys as code: apply YAML/JSON files, export a workspace.",
    no_args_is_help=True,
)
JourneyUrl = Annotated[str, typer.Option(help="The journey service's address.")]
NotifierUrl = Annotated[str, typer.Option(help="The notifier's address (templates).")]
SegmenterUrl = Annotated[str, typer.Option(help="The segmenter's address (rule segments).")]
AdminKey = Annotated[
    str | None,
    typer.Option(
        help="The workspace's admin key (else KIZUNA_ADMIN_KEY, else the one `kizuna dev` saved)."
    ),
]


def resolve_admin_key(given: str | None) -> str | None:
    from kizuna.settings import KizunaSettings

    if given:
        return given
    settings = KizunaSettings()
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    try:
        saved = json.loads((settings.data_dir / "credentials.json").read_text())
    except (OSError, ValueError):
        return None
    key = saved.get("admin_key") if isinstance(saved, dict) else None
    return key if isinstance(key, str) and key else None


def _remote(
    journey_url: str, notifier_url: str, segmenter_url: str, admin_key: str | None
) -> Remote:
    from kizuna.journeys_as_code.remote import Remote

    key = resolve_admin_key(admin_key)
    if not key:
        typer.echo(
            "kizuna journeys: give --admin-key, set KIZUNA_ADMIN_KEY or run `kizuna dev`", err=True
        )
        raise typer.Exit(2)
    urls: dict[Kind, str] = {
        "segments": segmenter_url,
        "templates": notifier_url,
        "journeys": journey_url,
    }
    return Remote(urls, key)


def _fail(lines: list[str]) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


@journeys_app.command("apply")
def apply(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="YAML or JSON files, or directories of them."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    journey_url: JourneyUrl = "http://127.0.0.1:8004",
    notifier_url: NotifierUrl = "http://127.0.0.1:8005",
    segmenter_url: SegmenterUrl = "http://127.0.0.1:8003",
    admin_key: AdminKey = None,
) -> None:
    """Make the workspace match the files: segments, then templates, then journeys, then
    journey statuses. Applying the same files again changes nothing."""
    from kizuna.journeys_as_code import files, run
    from kizuna.journeys_as_code.document import merge
    from kizuna.journeys_as_code.plan import summary
    from kizuna.journeys_as_code.remote import ApiError

    read, problems = files.read_items(paths)
    items, duplicates = merge(read)
    if problems or duplicates:
        _fail(problems + duplicates)
    remote = _remote(journey_url, notifier_url, segmenter_url, admin_key)
    try:
        changes = run.plan(remote, items)
        blocked = [c.problem_line() for c in changes if c.problem]
        if blocked:
            _fail(blocked)
        if dry_run:
            for change in changes:
                typer.echo(change.describe())
                if change.diff():
                    typer.echo(change.diff())
            typer.echo(summary(changes, dry_run=True))
            return
        errors = run.execute(remote, changes, typer.echo)
    except ApiError as error:
        _fail([f"kizuna journeys: {error}"])
    finally:
        remote.close()
    if errors:
        _fail(errors)
    typer.echo(summary(changes, dry_run=False))


@journeys_app.command("export")
def export(
    out: Annotated[
        Path | None,
        typer.Option(
            help="A .yaml/.yml/.json file, or a directory (segments.yaml, templates.yaml,"
            " journeys.yaml); else standard output."
        ),
    ] = None,
    journey_url: JourneyUrl = "http://127.0.0.1:8004",
    notifier_url: NotifierUrl = "http://127.0.0.1:8005",
    segmenter_url: SegmenterUrl = "http://127.0.0.1:8003",
    admin_key: AdminKey = None,
) -> None:
    """Write the workspace's rule segments, templates and journeys in the file format."""
    from kizuna.journeys_as_code import files, run
    from kizuna.journeys_as_code.remote import ApiError

    remote = _remote(journey_url, notifier_url, segmenter_url, admin_key)
    try:
        document = run.export(remote, lambda note: typer.echo(note, err=True))
    except ApiError as error:
        _fail([f"kizuna journeys: {error}"])
    finally:
        remote.close()
    try:
        if out is None:
            typer.echo(files.dump(document, False), nl=False)
            return
        written = files.write(document, out)
    except (files.Unreadable, OSError) as error:
        _fail([f"kizuna journeys: {error}"])
    for path in written:
        typer.echo(f"wrote {path}", err=True)
