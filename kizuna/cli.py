"""The `kizuna` command."""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated, Any

import typer

from kizuna.services import SERVICES

app = typer.Typer(help="Kizuna: event-driven marketing automation.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")


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


if __name__ == "__main__":
    app()
