"""The `scott` command line. Each subcommand is one small function; heavy imports happen inside it.

Add a subcommand with `@app.command()` on a function whose typed parameters are its options.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="scott",
    help="SCott Serve: few-step text-to-image serving and SCott distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelDir = Annotated[Path | None, typer.Option("--model", help="diffusers-format model folder [env SCOTT_MODEL_DIR]")]
Backend = Annotated[str | None, typer.Option(help="runtime: torch [env SCOTT_BACKEND]")]
Device = Annotated[str | None, typer.Option(help="e.g. cpu, cuda, cuda:1; default: CUDA when present")]


class Preset(StrEnum):
    tiny = "tiny"
    sd15 = "sd15"


def _overrides(**options: object) -> dict[str, object]:
    """Only the flags given on the command line, so SCOTT_* variables fill in the rest."""
    return {name: value for name, value in options.items() if value is not None}


@app.command()
def serve(
    model: ModelDir = None,
    backend: Backend = None,
    device: Device = None,
    host: Annotated[str | None, typer.Option(help="[env SCOTT_HOST, default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="[env SCOTT_PORT, default 8000]")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="images per UNet batch; 1 turns batching off")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="how long a batch waits for company")] = None,
    max_queue: Annotated[int | None, typer.Option(help="images admitted before 429")] = None,
    request_timeout_s: Annotated[float | None, typer.Option(help="deadline per request, then 504")] = None,
    log_level: Annotated[str | None, typer.Option(help="uvicorn log level")] = None,
) -> None:
    """Serve a model over HTTP: POST /generate, the OpenAI Images API, /metrics, health checks."""
    import uvicorn

    from server.app import create_app
    from server.settings import ServerSettings

    settings = ServerSettings(
        **_overrides(
            model_dir=model,
            backend=backend,
            device=device,
            host=host,
            port=port,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            request_timeout_s=request_timeout_s,
            log_level=log_level,
        )
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what to draw")],
    model: ModelDir = None,
    steps: Annotated[int | None, typer.Option(min=1, max=4, help="sampler steps; default: the model's")] = None,
    seed: Annotated[int, typer.Option(min=0, help="noise seed")] = 0,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="guidance scale; default: the model's")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="stochasticity; default: the model's")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT; default: the model's")] = None,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("out.png"),
    backend: Backend = None,
    device: Device = None,
) -> None:
    """Make one image in-process (no server) and write it as a PNG."""
    from engines import load_pipeline
    from server.errors import ApiError
    from server.images import encode_png
    from server.params import resolve
    from server.schemas import parse_size
    from server.settings import ServerSettings

    settings = ServerSettings(**_overrides(model_dir=model, backend=backend, device=device))
    width = height = None
    if size is not None:
        try:
            width, height = parse_size(size)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--size") from exc
    pipeline = load_pipeline(settings.model_dir, backend=settings.backend, device=settings.device)
    try:
        params = resolve(
            pipeline.info,
            prompt,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            gamma=gamma,
            width=width,
            height=height,
            size_field="size",
        )
    except ApiError as exc:
        raise typer.BadParameter(exc.message) from exc
    start = time.perf_counter()
    output = pipeline.generate(params.image_requests())
    elapsed = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(output.images[0]))
    t = output.timings
    typer.echo(
        f"wrote {out} ({params.width}x{params.height}, {params.steps} steps, seed {params.seed}) in {elapsed:.3f}s "
        f"[text {t.text:.3f}s, unet {t.unet:.3f}s, vae {t.vae:.3f}s]"
    )
    if output.prompt_truncated and output.prompt_truncated[0]:
        typer.echo(f"note: the prompt was truncated to {pipeline.info.max_prompt_tokens} tokens", err=True)


@app.command("make-model")
def make_model(
    out: Annotated[Path, typer.Option(help="folder to write (diffusers format)")],
    preset: Annotated[Preset, typer.Option(help="architecture")] = Preset.tiny,
    seed: Annotated[int, typer.Option(help="weight init seed")] = 0,
) -> None:
    """Write a diffusers-format model folder with random weights from a preset."""
    from scott.models import build_model, save_model

    path = save_model(build_model(preset.value, seed=seed), out)
    typer.echo(f"wrote {preset.value} model (seed {seed}) to {path}")


if __name__ == "__main__":
    app()
