"""Command-line flags made from ServerSettings' fields: a flag's name, type and help are its field's, defined once.

So a new setting is a `scott serve` flag with no edit to the CLI, and SCOTT_* variables fill in the flags not given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from server.settings import ServerSettings

Command = TypeVar("Command", bound=Callable[..., Any])

# model_dir has always been --model on every command; --model-dir, the field's own name, works too.
_DECLS = {"model_dir": ("--model", "--model-dir")}
# Secrets are no flags: a command line is visible to every user of the host (`ps`). SCOTT_API_KEYS or a file.
ENV_ONLY = ("api_keys",)


def flag_names(name: str) -> tuple[str, ...]:
    """The flags of the ServerSettings field `name`, e.g. ("--max-batch-size",); a bool's has its --no- form."""
    if name in _DECLS:
        return _DECLS[name]
    flag = name.replace("_", "-")
    return (f"--{flag}/--no-{flag}",) if ServerSettings.model_fields[name].annotation is bool else (f"--{flag}",)


def env_var(name: str) -> str:
    return f"{ServerSettings.model_config['env_prefix']}{name.upper()}"


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    default = field.get_default(call_default_factory=True)
    shown = "" if default is None else f"; default {default}"  # a None default is described in the help
    option = typer.Option(*flag_names(name), help=f"{field.description} (env {env_var(name)}{shown})")
    # None means "not given", so the environment (then the field's default) decides.
    annotation = Annotated[field.annotation | None, option]  # type: ignore[operator]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def settings_flags(*names: str) -> Callable[[Command], Command]:
    """Give a command a flag for each named ServerSettings field (every field when none are named).

    The command takes them as `**flags` and makes its settings with `settings_from(flags)`.
    """
    fields = ServerSettings.model_fields

    def add(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        flags = [_parameter(name, fields[name]) for name in names or fields if name not in ENV_ONLY]
        command.__signature__ = signature.replace(parameters=[*own, *flags])  # type: ignore[attr-defined]
        return command

    return add


def settings_from(flags: Mapping[str, object]) -> ServerSettings:
    """The settings from the flags given, SCOTT_* variables and defaults; a bad value is a usage error naming it."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else None  # None: a check across fields
        hint = None
        if name is not None:
            hint = flag_names(name)[0].split("/")[0] if name in given else env_var(name)
        raise typer.BadParameter(error["msg"], param_hint=hint) from exc
