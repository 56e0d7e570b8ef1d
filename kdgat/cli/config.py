"""`kdgat config show`: the composed run configuration and its hash."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kdgat.cli.common import ConfigFormat, user_errors

config_app = typer.Typer(help="Inspect the composed run configuration.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    model: Annotated[str, typer.Option("--model", "-m", help="vgae, gat, dqn, hgb or novelty.")] = "gat",
    scale: Annotated[str, typer.Option("--scale", "-s", help="large (teacher) or small (student).")] = "large",
    aux: Annotated[list[str], typer.Option("--aux", "-a", help="Auxiliary config, e.g. kd_standard (repeatable).")] = [
        "none"
    ],
    override: Annotated[
        list[str], typer.Option("--override", "-O", help="Override a key: -O section.key=value (repeatable).")
    ] = [],
    fmt: Annotated[ConfigFormat, typer.Option("--format", help="Output format.")] = ConfigFormat.yaml,
) -> None:
    """Print the resolved config (defaults -> model -> auxiliaries -> -O) and its content hash."""
    from kdgat.core.config import config_hash, config_to_json, config_to_yaml, resolve_config

    with user_errors():
        cfg = resolve_config(model, scale, aux, override)
    if fmt is ConfigFormat.json:
        typer.echo(json.dumps({"config_hash": config_hash(cfg), "config": json.loads(config_to_json(cfg))}, indent=2))
    else:
        typer.echo(f"# config_hash: {config_hash(cfg)}")
        typer.echo(config_to_yaml(cfg), nl=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.add_typer(config_app, name="config")
