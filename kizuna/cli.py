"""The `kizuna` command."""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated, Any

import typer

from kizuna.journeys_as_code.command import journeys_app
from kizuna.services import SERVICES

app = typer.Typer(help="Kizuna: event-driven marketing automation.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
report_app = typer.Typer(help="Look at the segmenter's analyses in the terminal.")
app.add_typer(report_app, name="report")
app.add_typer(journeys_app, name="journeys")
SegmenterUrl = Annotated[str, typer.Option(help="The segmenter's address.")]
AdminKey = Annotated[
    str | None, typer.Option(help="The workspace's admin key (else KIZUNA_ADMIN_KEY).")
]


@app.command()
def dev(
    port_base: Annotated[
        int | None, typer.Option(help="Serve on BASE+1..BASE+5 instead of 8001..8005.")
    ] = None,
) -> None:
    """Run the whole platform on the embedded default (PostgreSQL + its event log)."""
    from kizuna import devserver

    raise typer.Exit(devserver.run(port_base))


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    port: Annotated[
        int | None, typer.Option(help="Defaults to KIZUNA_PORT or the service's port.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Defaults to KIZUNA_HOST.")] = None,
) -> None:
    """Run one service (for deployment: one process or container per service)."""
    import uvicorn

    from kizuna.settings import KizunaSettings

    spec = SERVICES.get(service)
    if spec is None:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
    settings = KizunaSettings()
    problem = settings.secret_key_problem()
    if problem:
        typer.echo(f"kizuna serve: {problem}", err=True)
        raise typer.Exit(2)
    module_name, _, factory_name = spec.app_factory.partition(":")
    factory: Any = getattr(importlib.import_module(module_name), factory_name)
    uvicorn.run(
        factory(),
        host=host or settings.host,
        port=port or settings.port or spec.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


@app.command()
def migrate() -> None:
    """Apply every pending schema migration to KIZUNA_DATABASE_URL."""
    from kizuna import migrate as migrations
    from kizuna.settings import KizunaSettings

    done = migrations.upgrade(KizunaSettings().database_dsn())
    typer.echo(f"schema up to date: {', '.join(done)}")


@workspace_app.command("create")
def create_workspace(name: str) -> None:
    """Create a workspace and print its first write key and admin key (shown once)."""
    from kizuna import auth
    from kizuna.db import create_engine
    from kizuna.settings import KizunaSettings

    async def create() -> tuple[str, auth.IssuedKey, auth.IssuedKey]:
        engine = create_engine(KizunaSettings().database_dsn(), pool_size=1)
        try:
            async with engine.begin() as conn:
                workspace_id = await auth.create_workspace(conn, name)
                write = await auth.issue_key(conn, workspace_id, "write", "first write key")
                admin = await auth.issue_key(conn, workspace_id, "admin", "first admin key")
            return workspace_id, write, admin
        finally:
            await engine.dispose()

    workspace_id, write, admin = asyncio.run(create())
    typer.echo(f"workspace {workspace_id}\nwrite key {write.secret}\nadmin key {admin.secret}")


def _fetch(url: str, path: str, admin_key: str | None) -> Any:
    import httpx

    from kizuna.settings import KizunaSettings

    key = admin_key or (lambda k: k.get_secret_value() if k else None)(KizunaSettings().admin_key)
    if not key:
        typer.echo("kizuna report: give --admin-key or set KIZUNA_ADMIN_KEY", err=True)
        raise typer.Exit(2)
    try:
        response = httpx.get(
            url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
    except httpx.TransportError as error:
        typer.echo(f"kizuna report: cannot reach the segmenter at {url}: {error}", err=True)
        raise typer.Exit(1) from error
    if response.status_code != 200:
        typer.echo(f"kizuna report: {response.status_code} {response.text}", err=True)
        raise typer.Exit(1)
    return response.json()


@report_app.command("rfm")
def report_rfm(
    url: SegmenterUrl = "http://127.0.0.1:8003",
    admin_key: AdminKey = None,
    colour: Annotated[bool, typer.Option("--colour/--no-colour")] = True,
) -> None:
    """The RFM grid as a heat map, and customers and revenue per tier."""
    from kizuna_segmenter.report import rfm_grid

    typer.echo(rfm_grid(_fetch(url, "/v1/rfm/grid", admin_key), colour=colour))


@report_app.command("deciles")
def report_deciles(
    url: SegmenterUrl = "http://127.0.0.1:8003",
    admin_key: AdminKey = None,
    colour: Annotated[bool, typer.Option("--colour/--no-colour")] = True,
) -> None:
    """Buyers in ten groups by revenue, with each group's share."""
    from kizuna_segmenter.report import decile_table

    typer.echo(decile_table(_fetch(url, "/v1/analysis/deciles", admin_key), colour=colour))


@app.command("simulate-shop")
def simulate_shop(
    customers: Annotated[int, typer.Option(min=1, help="How many customers the shop has.")] = 2000,
    seed: Annotated[int, typer.Option(help="The same seed gives the same shop.")] = 42,
    backfill_days: Annotated[
        float, typer.Option(min=0, help="Days of order history sent first (0: none).")
    ] = 730,
    backfill: Annotated[
        bool, typer.Option(help="Send the history (--no-backfill: an earlier run did).")
    ] = True,
    rate: Annotated[float, typer.Option(min=0.01, help="Live events per second.")] = 10.0,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Seconds of live traffic (unset: until Ctrl-C).")
    ] = None,
    ingest_url: Annotated[str, typer.Option(help="Ingest's address.")] = "http://127.0.0.1:8001",
    profile_url: Annotated[str, typer.Option(help="Profile's address.")] = "http://127.0.0.1:8002",
    write_key: Annotated[
        str | None, typer.Option(help="Else KIZUNA_WRITE_KEY, else the key `kizuna dev` made.")
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(help="Else KIZUNA_ADMIN_KEY, else `kizuna dev`'s (for --check).")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="Where history ends, live starts (ISO 8601; unset: now).")
    ] = None,
    check: Annotated[bool, typer.Option(help="Ask profile afterwards what arrived.")] = True,
) -> None:
    """A seeded synthetic shop: two years of customers, carts and orders, then live traffic,
    all through the public tracking API (docs/simulate-shop.md)."""
    from kizuna.shop import command

    options = command.Options(
        customers, seed, backfill_days, backfill, rate, duration, ingest_url, profile_url,
        write_key, admin_key, now, check,
    )  # fmt: skip
    raise typer.Exit(command.run(options))


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=10, help="Customers in the demo shop.")] = 2000,
    history_days: Annotated[
        float, typer.Option(min=1, help="Days of order history sent first.")
    ] = 365,
    rate: Annotated[float, typer.Option(min=0.1, help="Live events per second.")] = 20.0,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Seconds of live traffic (unset: until Ctrl-C).")
    ] = None,
    port_base: Annotated[
        int | None, typer.Option(help="The --port-base `kizuna dev` was started with.")
    ] = None,
    seed: Annotated[int, typer.Option(help="The same seed gives the same shop.")] = 42,
) -> None:
    """On top of a running `make dev`: a shop with history, the standard journeys with
    minute-scale waits, live traffic, and what happens, as it happens."""
    import sys

    from kizuna import demo as demo_run
    from kizuna.shop.command import find_key

    urls = demo_run.urls_for(port_base)
    down = demo_run.not_running(urls)
    if down:
        typer.echo(
            f"kizuna demo: not running: {', '.join(down)}. Start the platform first:"
            " `make dev` in another terminal.",
            err=True,
        )
        raise typer.Exit(2)
    write_key, admin_key = find_key("write", None), find_key("admin", None)
    if write_key is None or admin_key is None:
        typer.echo("kizuna demo: no keys: run `make dev` (it writes them) or set"
                   " KIZUNA_WRITE_KEY and KIZUNA_ADMIN_KEY", err=True)  # fmt: skip
        raise typer.Exit(2)
    options = demo_run.DemoOptions(
        customers=customers, history_days=history_days, rate=rate, duration=duration,
        port_base=port_base, seed=seed,
    )  # fmt: skip
    platform = demo_run.Platform(urls, write_key, admin_key)
    raise typer.Exit(demo_run.run(platform, options, sys.stdout))


if __name__ == "__main__":
    app()
