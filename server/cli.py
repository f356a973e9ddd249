"""The `scott` command line. Each subcommand is one small function; heavy imports happen inside it.

Add a subcommand with `@app.command()` on a function whose typed parameters are its options.
"""

from __future__ import annotations

import json
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
Backend = Annotated[str | None, typer.Option(help="runtime: torch | onnx | tensorrt [env SCOTT_BACKEND]")]
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
    max_wait_ms: Annotated[float | None, typer.Option(help="batch wait for company, under concurrency")] = None,
    max_queue: Annotated[int | None, typer.Option(help="images admitted before 429")] = None,
    request_timeout_s: Annotated[float | None, typer.Option(help="deadline per request, then 504")] = None,
    log_level: Annotated[str | None, typer.Option(help="uvicorn log level")] = None,
) -> None:
    """Serve a model over HTTP: POST /generate, the OpenAI Images API, /metrics, health checks, a playground at /."""
    from server.app import serve as run_server
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
    run_server(settings)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what to draw")],
    model: ModelDir = None,
    steps: Annotated[int | None, typer.Option(min=1, max=4, help="sampler steps; default: the model's")] = None,
    seed: Annotated[int, typer.Option(min=0, help="noise seed")] = 0,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="guidance scale; default: the model's")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="stochasticity; default: the model's")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT or SIDE; default: the model's")] = None,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("out.png"),
    backend: Backend = None,
    device: Device = None,
) -> None:
    """Make one image in-process (no server) and write it as a PNG."""
    from engines import load_pipeline
    from engines.shapes import parse_size
    from server.errors import ApiError
    from server.images import encode_png
    from server.params import resolve
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
    output = pipeline.generate(params.expand())
    elapsed = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(output.images[0]))
    t, first = output.timings, params.first
    typer.echo(
        f"wrote {out} ({first.width}x{first.height}, {first.steps} steps, seed {first.seed}) in {elapsed:.3f}s "
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


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="folder for text_encoder/unet/vae_decoder .onnx and manifest.json")],
    model: ModelDir = None,
    force_external_data: Annotated[bool, typer.Option(help="weights beside the graph even when small")] = False,
) -> None:
    """Export the text encoder, UNet and VAE decoder to ONNX (fp32, dynamic batch), checked against PyTorch."""
    from engines.onnx_export import ExportError, export_onnx
    from server.settings import ServerSettings

    model_dir = ServerSettings(**_overrides(model_dir=model)).model_dir
    try:
        manifest = export_onnx(model_dir, out, external_data=True if force_external_data else None, log=typer.echo)
    except ExportError as exc:
        typer.echo(f"export failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for name, network in manifest["networks"].items():
        typer.echo(f"{name}: max abs error vs PyTorch {network['max_abs_error']:.2e}")


@app.command("build-engines")
def build_engines(
    out: Annotated[Path, typer.Option(help="engine folder (engines.json index, .plan files, sidecars)")],
    model: ModelDir = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="top of the batch optimization profile")] = 8,
    sizes: Annotated[list[str] | None, typer.Option(help="WIDTHxHEIGHT (repeatable); default: the model's")] = None,
    device: Device = None,
) -> None:
    """Build TensorRT FP16 engines from the ONNX export (made first if missing). Needs TensorRT and a CUDA GPU."""
    from engines.shapes import parse_size
    from engines.tensorrt_build import build_engines as build
    from engines.tensorrt_build import index_summary
    from server.settings import ServerSettings

    model_dir = ServerSettings(**_overrides(model_dir=model)).model_dir
    try:
        parsed = [parse_size(size) for size in sizes] if sizes else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sizes") from exc
    try:
        engines = build(model_dir, out, max_batch_size=max_batch_size, sizes=parsed, device=device, log=typer.echo)
    except RuntimeError as exc:  # no TensorRT / no CUDA: say what is missing, build nothing
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(index_summary(engines), indent=2, default=str))


@app.command()
def distill(
    teacher: Annotated[Path, typer.Option(help="diffusers-format SD-layout teacher folder")],
    data: Annotated[str, typer.Option(help="procedural[:N] | folder of images + .txt | webdataset shards")],
    out: Annotated[Path, typer.Option(help="student model folder to write (diffusers format)")],
    config: Annotated[Path | None, typer.Option(help="YAML/TOML/JSON config; flags override it")] = None,
    eta: Annotated[float | None, typer.Option(help="teacher SDE noise strength; 0 = ODE = vanilla CD")] = None,
    substeps: Annotated[int | None, typer.Option(help="h: teacher solver sub-steps")] = None,
    skip: Annotated[int | None, typer.Option(help="k: t_m = t_n - k, in train timesteps")] = None,
    w_min: Annotated[float | None, typer.Option(help="lowest guidance scale trained")] = None,
    w_max: Annotated[float | None, typer.Option(help="highest guidance scale trained")] = None,
    ema_decay: Annotated[float | None, typer.Option(help="EMA decay of the target network")] = None,
    distance: Annotated[str | None, typer.Option(help="huber | l2")] = None,
    adv_weight: Annotated[float | None, typer.Option(help="lambda_adv; 0 turns the discriminator off")] = None,
    disc_lr: Annotated[float | None, typer.Option(help="discriminator learning rate")] = None,
    lr: Annotated[float | None, typer.Option(help="student learning rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="per process")] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    seed: Annotated[int | None, typer.Option(help="data, noise and init seed")] = None,
    mixed_precision: Annotated[str | None, typer.Option(help="no | fp16 | bf16")] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option(help="trade compute for memory")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="steps between checkpoints; 0: final only")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="checkpoints, latent cache, loss log")] = None,
) -> None:
    """SCott distillation of a teacher into a few-step student (multi-GPU: accelerate launch -m scott.distill)."""
    options = dict(locals())  # the flags, taken before any other local exists
    from scott.distill import distill as run
    from scott.distill import load_config

    cfg = load_config(options.pop("config"), **options)
    result = run(cfg)
    typer.echo(f"wrote {result.model_dir} after {result.steps} steps ({result.seconds_per_step:.2f} s/step)")


@app.command("eval")
def evaluate_model(
    model: ModelDir = None,
    steps: Annotated[list[int] | None, typer.Option(help="sampler steps to score (repeatable)")] = None,
    n: Annotated[int, typer.Option(min=1, help="images per prompt")] = 20,
    prompts: Annotated[int, typer.Option(min=1, help="held-out prompts")] = 100,
    guidance: Annotated[float | None, typer.Option(help="guidance scale; default: the model's")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="default: the model's")] = None,
    seed: Annotated[int, typer.Option(help="first image seed")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics here too")] = None,
    backend: Backend = None,
    device: Device = None,
) -> None:
    """Score a procedural-data model on held-out prompts: prompt accuracy, FID, precision/recall, coverage."""
    from rich.console import Console
    from rich.table import Table

    from engines import load_pipeline
    from scott.eval import eval_prompts, evaluate
    from scott.eval.generators import pipeline_generate_fn
    from server.settings import ServerSettings

    settings = ServerSettings(**_overrides(model_dir=model, backend=backend, device=device))
    pipeline = load_pipeline(settings.model_dir, backend=settings.backend, device=settings.device)
    held_out = eval_prompts(prompts)
    results = {}
    for step_count in steps or [1, 2, 4]:
        generate_fn = pipeline_generate_fn(pipeline, step_count, guidance_scale=guidance, gamma=gamma)
        results[step_count] = evaluate(generate_fn, held_out, n, seed=seed)
    columns = {
        "prompt_accuracy": "acc",
        "fid": "FID",
        "precision": "prec",
        "recall": "recall",
        "coverage": "cover",
        "real_fid": "FID floor",
    }
    table = Table(title=f"{settings.model_dir} on {len(held_out)} held-out prompts x {n} images")
    table.add_column("steps")
    for label in columns.values():
        table.add_column(label, justify="right")
    for step_count, metrics in results.items():
        table.add_row(str(step_count), *(f"{metrics.get(key, float('nan')):.3f}" for key in columns))
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    app()
