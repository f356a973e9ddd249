"""The `scott` command line. Each subcommand is one small function; heavy imports happen inside it.

Add a subcommand with `@app.command()` on a function whose typed parameters are its options; a setting's flag
comes from its ServerSettings field (`@settings_flags(...)`, server/flags.py), never restated here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from server.flags import settings_flags, settings_from

app = typer.Typer(
    name="scott",
    help="SCott Serve: few-step text-to-image serving and SCott distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Preset(StrEnum):
    tiny = "tiny"
    sd15 = "sd15"


def _sizes(texts: Sequence[str], flag: str) -> list[tuple[int, int]]:
    """Sizes in the one grammar of every command (server.params.parse_size); a bad one is a usage error."""
    from server.params import parse_size

    try:
        return [parse_size(text) for text in texts]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from exc


def _steps() -> Callable[[str], None]:
    """A log for long work (exports, engine builds): each step on its own line with the time since the start."""
    from rich.console import Console

    console, start = Console(stderr=True, highlight=False), time.perf_counter()

    def step(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:7.1f}s[/dim] {message}")

    return step


@app.command()
@settings_flags()
def serve(**flags: Any) -> None:
    """Serve a model over HTTP: POST /generate, the OpenAI Images API, /metrics, health checks, a playground at /."""
    from server.app import serve as run_server

    run_server(settings_from(flags))


@app.command()
@settings_flags("model_dir", "backend", "device", "precision", "threads", "decoder")
def generate(
    prompt: Annotated[str, typer.Argument(help="what to draw")],
    steps: Annotated[int | None, typer.Option(min=1, max=4, help="sampler steps; default: the model's")] = None,
    seed: Annotated[int, typer.Option(min=0, help="noise seed")] = 0,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="guidance scale; default: the model's")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="stochasticity; default: the model's")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT or SIDE; default: the model's")] = None,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("out.png"),
    **flags: Any,
) -> None:
    """Make one image in-process (no server) and write it as a PNG."""
    from engines.loader import load_pipeline
    from server.errors import ApiError
    from server.images import encode_png
    from server.params import resolve

    settings = settings_from(flags)
    width, height = _sizes([size], "--size")[0] if size is not None else (None, None)
    pipeline = load_pipeline(settings.model_dir, settings.load_options())
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
    t, first, backend = output.timings, params.first, pipeline.backend
    typer.echo(
        f"wrote {out} ({first.width}x{first.height}, {first.steps} steps, seed {first.seed}) in {elapsed:.3f}s "
        f"on {backend.name} {backend.precision}, {pipeline.info.decoder} decoder "
        f"[text {t.text:.3f}s, unet {t.unet:.3f}s, vae {t.vae:.3f}s]"
    )
    if output.prompt_truncated and output.prompt_truncated[0]:
        typer.echo(f"note: the prompt was truncated to {pipeline.info.max_prompt_tokens} tokens", err=True)


@app.command()
@settings_flags("model_dir", "device", "max_batch_size")
def check(
    backends: Annotated[
        str, typer.Option(help="comma list to check; torch-compile too, if asked (minutes of compiling at first)")
    ] = "torch,onnx,openvino,tensorrt",
    steps: Annotated[int | None, typer.Option(min=1, max=4, help="sampler steps; default: the model's")] = None,
    **flags: Any,
) -> None:
    """Check every backend this host can run against torch f32 (same prompts and seeds): pixels, NaN, timings."""
    from rich.console import Console
    from rich.table import Table

    from engines.check import PARITY, run_check

    settings = settings_from(flags)
    names = tuple(name.strip() for name in backends.split(",") if name.strip())
    rows = run_check(settings.model_dir, settings.device, settings.max_batch_size, names, steps, log=_steps())
    table = Table(title=f"scott check: {settings.model_dir}, batch 1 and {settings.max_batch_size}, vs torch f32")
    for column in ("backend", "precision", "mean diff", "max diff", "text ms", "unet ms", "vae ms", "image ms"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    table.add_column("verdict")
    for row in rows:
        ms = row.ms or {}
        cells = [f"{ms[k]:.1f}" if k in ms else "" for k in ("text", "unet", "vae", "total")]
        diffs = ["", ""] if row.mean_diff is None else [f"{row.mean_diff:.2f}", str(row.max_diff)]
        verdict = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]"}.get(row.status, "[yellow]n/a[/yellow]")
        table.add_row(row.backend, row.precision, *diffs, *cells, f"{verdict} {row.reason}".strip())
    Console(width=160).print(table)
    typer.echo("bounds (mean / max of 255): " + ", ".join(f"{p} {m} / {x}" for p, (m, x) in PARITY.items()))
    if any(row.status == "fail" for row in rows):
        raise typer.Exit(1)


@app.command("make-model")
def make_model(
    out: Annotated[Path, typer.Option(help="folder to write (diffusers format)")],
    preset: Annotated[Preset, typer.Option(help="architecture")] = Preset.tiny,
    seed: Annotated[int, typer.Option(help="weight init seed")] = 0,
    tiny_decoder: Annotated[
        bool, typer.Option(help="also a random tiny decoder (vae_tiny/; TAESD's architecture for sd15)")
    ] = False,
) -> None:
    """Write a diffusers-format model folder with random weights from a preset (with the preset's example prompts
    in serving.json where it has some)."""
    from scott.models import PRESET_EXAMPLES, ServingCard, build_model, save_model, write_serving_card

    path = save_model(build_model(preset.value, seed=seed, tiny_decoder=tiny_decoder), out)
    if preset.value in PRESET_EXAMPLES:
        write_serving_card(path, ServingCard(examples=PRESET_EXAMPLES[preset.value]))
    typer.echo(f"wrote {preset.value} model (seed {seed}{', tiny decoder' if tiny_decoder else ''}) to {path}")


@app.command()
@settings_flags("model_dir", "decoder")
def export(
    out: Annotated[Path, typer.Option(help="folder for text_encoder/unet/vae_decoder .onnx and manifest.json")],
    force_external_data: Annotated[bool, typer.Option(help="weights beside the graph even when small")] = False,
    precision: Annotated[
        str, typer.Option(help="f32, or f16 (f32 inputs and outputs; what TensorRT 11 builds f16 engines from)")
    ] = "f32",
    **flags: Any,
) -> None:
    """Export the text encoder, UNet and VAE decoder to ONNX (dynamic batch), checked against PyTorch."""
    from engines.onnx_export import ExportError, export_onnx
    from scott.decoder import resolve_decoder

    settings = settings_from(flags)
    try:
        external = True if force_external_data else None
        decoder = resolve_decoder(settings.model_dir, settings.decoder)
        manifest = export_onnx(
            settings.model_dir, out, external_data=external, log=_steps(), precision=precision, decoder=decoder
        )
    except (ExportError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"export failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for name, network in manifest["networks"].items():
        typer.echo(f"{name}: max abs error vs PyTorch {network['max_abs_error']:.2e}")


@app.command("build-engines")
@settings_flags("model_dir", "max_batch_size", "device", "vae_precision", "decoder")
def build_engines(
    out: Annotated[Path, typer.Option(help="engine folder (per-target engines-*.json index, .plan files, sidecars)")],
    sizes: Annotated[
        list[str] | None, typer.Option(help="WIDTHxHEIGHT or SIDE (repeatable); default: the model's")
    ] = None,
    **flags: Any,
) -> None:
    """Build TensorRT FP16 engines from the ONNX export (made first if missing). Needs TensorRT and a CUDA GPU.

    --max-batch-size is the top of the engines' batch profile: the server's own --max-batch-size.
    """
    from engines.tensorrt_build import build_engines as build
    from engines.tensorrt_build import index_summary
    from scott.decoder import resolve_decoder

    settings = settings_from(flags)
    parsed = _sizes(sizes, "--sizes") if sizes else None
    try:
        engines = build(
            settings.model_dir,
            out,
            max_batch_size=settings.max_batch_size,
            sizes=parsed,
            device=settings.device,
            log=_steps(),
            vae_precision=settings.vae_precision,
            decoder=resolve_decoder(settings.model_dir, settings.decoder),
        )
    except RuntimeError as exc:  # no TensorRT / no CUDA: say what is missing, build nothing
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(index_summary(engines), indent=2, default=str))


# The flags are DistillConfig's fields, parsed by scott.distill's own generated parser (as `python -m scott.distill`
# and `accelerate launch -m scott.distill` take them), so they are declared once, on the dataclass.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def distill(ctx: typer.Context) -> None:
    """SCott distillation of a teacher into a few-step student: --teacher DIR --out DIR, a flag per config field."""
    from scott.distill import distill as run
    from scott.distill import load_config
    from scott.distill.__main__ import build_parser

    parser = build_parser()
    parser.prog = "scott distill"
    options = vars(parser.parse_args(ctx.args))
    try:
        cfg = load_config(options.pop("config"), **options)
        cfg.require_paths()
    except ValueError as exc:
        parser.error(str(exc))
    result = run(cfg)
    typer.echo(f"wrote {result.model_dir} after {result.steps} steps ({result.seconds_per_step:.2f} s/step)")


@app.command("eval")
@settings_flags("model_dir", "backend", "device", "precision", "threads")
def evaluate_model(
    steps: Annotated[list[int] | None, typer.Option(help="sampler steps to score (repeatable)")] = None,
    n: Annotated[int, typer.Option(min=1, help="images per prompt")] = 20,
    prompts: Annotated[int, typer.Option(min=1, help="held-out prompts")] = 100,
    guidance: Annotated[float | None, typer.Option(help="guidance scale; default: the model's")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="default: the model's")] = None,
    seed: Annotated[int, typer.Option(help="first image seed")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics here too")] = None,
    **flags: Any,
) -> None:
    """Score a procedural-data model on held-out prompts: fd_low, prompt and attribute accuracy, precision, coverage."""
    from rich.console import Console
    from rich.table import Table

    from engines.loader import load_pipeline
    from scott.eval import eval_prompts, evaluate
    from scott.eval.generators import pipeline_generate_fn

    settings = settings_from(flags)
    pipeline = load_pipeline(settings.model_dir, settings.load_options())
    held_out = eval_prompts(prompts)
    results = {}
    for step_count in steps or [1, 2, 4]:
        generate_fn = pipeline_generate_fn(pipeline, step_count, guidance_scale=guidance, gamma=gamma)
        results[step_count] = evaluate(generate_fn, held_out, n, seed=seed)
    # The metrics that rank quality (benchmarks/eval_validation.py; the JSON has every one, FID included).
    columns = {
        "fd_low": "FD low",
        "real_fd_low": "FD low floor",
        "prompt_accuracy": "acc",
        "accuracy_color": "colour",
        "accuracy_size": "size",
        "precision": "prec",
        "coverage": "cover",
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
