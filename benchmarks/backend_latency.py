"""Latency of each backend, stage by stage and end to end, beside the pipelines a user would otherwise run.

    .venv/bin/python -m benchmarks.backend_latency  # models/scott-tiny: openvino, onnx, torch (+ tensorrt if present)
    make optimum-venv && .venv/bin/python -m benchmarks.backend_latency --optimum-python .venv-optimum/bin/python
    .venv/bin/python -m benchmarks.backend_latency --model DIR --device cuda --backends torch,tensorrt --batches 1,4,8

Stages: text encoder, one UNet call, VAE decode. End to end: TextToImagePipeline.generate at 1/2/4
steps. Each backend runs with the full VAE decoder and, where the model has one (vae_tiny/), the tiny decoder
(rows "... tiny"; --decoders). Peers on the same weights: diffusers' LatentConsistencyModelPipeline (fp32 on the
CPU, fp16 on CUDA) and, with --optimum-python, optimum-intel's OpenVINO LCM pipeline (benchmarks.optimum_peer, in
its own venv, same threads). Times are medians of --repeats runs after --warmup runs, in rounds that run every
pipeline 10 times back to back (ratios hold on a shared machine; optimum-intel runs apart, in its own process).
Target lines: the CPU default (openvino) >= 3x diffusers and >= 1.2x optimum-intel at batch 1, 1 step; >= 1.1x
optimum-intel at batch 8, 4 steps; with the tiny decoder, at batch 1, 1 step: its VAE decode >= 3x and end to end
>= 1.4x faster than the full decoder's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from engines.load_options import LoadOptions
from engines.loader import load_pipeline
from engines.tensorrt_env import missing_requirements
from engines.threads import physical_cores
from scott.decoder import TINY_SUBFOLDER
from scott.models import load_model
from scott.pipeline import ImageRequest, TextToImagePipeline

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "scott-tiny"  # the shipped model
GUIDANCE = 8.0
# (peer, batch, steps, speedup the CPU default must reach over it)
TARGETS = (("diffusers", 1, 1, 3.0), ("optimum-intel", 1, 1, 1.2), ("optimum-intel", 8, 4, 1.1))
TINY_TARGETS = {"vae": 3.0, "e2e": 1.4}  # tiny over full decoder, CPU default backend, batch 1, 1 step


def interleaved_ms(
    calls: dict[Any, tuple[Callable[[], object], Callable[[], None]]], warmup: int, repeats: int, block: int = 10
) -> dict[Any, float]:
    """Median ms of each (call, sync) over `repeats` runs, timed in rounds that run every call `block` times back to
    back: load that comes and goes on a shared machine lands on all of them alike, so their ratios hold even when the
    absolute times do not, and each call still runs warm, as a busy server's do."""
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for fn, sync in calls.values():
        for _ in range(warmup):
            fn()
        sync()
    while any(len(t) < repeats for t in times.values()):
        for key, (fn, sync) in calls.items():
            for _ in range(min(block, repeats - len(times[key]))):
                start = time.perf_counter()
                fn()
                sync()
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def requests(batch: int, steps: int, size: int) -> list[ImageRequest]:
    return [
        ImageRequest(
            f"a red circle number {i}", seed=i, steps=steps, guidance_scale=GUIDANCE, gamma=0.3, width=size, height=size
        )
        for i in range(batch)
    ]


def stage_calls(pipe: TextToImagePipeline, batch: int, size: int) -> dict[str, Callable[[], object]]:
    backend, info = pipe.backend, pipe.info
    device = backend.device
    ids, _ = pipe.tokenize([f"prompt {i}" for i in range(batch)])
    ids = ids.to(device)
    side = size // info.vae_scale_factor
    latents = torch.randn(batch, info.latent_channels, side, side, device=device)
    text = backend.encode_text(ids)
    timesteps = torch.full((batch,), 999, dtype=torch.long, device=device)
    cond = None
    if info.guidance_embedding_dim is not None:
        from scott.schedule import guidance_scale_embedding

        cond = guidance_scale_embedding(torch.full((batch,), GUIDANCE), info.guidance_embedding_dim).to(device)
    return {
        "text": lambda: backend.encode_text(ids),
        "unet": lambda: backend.predict(latents, timesteps, text, cond),
        "vae": lambda: backend.decode(latents),
    }


def diffusers_peer(model_dir: Path, device: torch.device):
    from scott.reference import diffusers_lcm_pipeline

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return diffusers_lcm_pipeline(load_model(model_dir, dtype=dtype)).to(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL, help="diffusers-format folder")
    parser.add_argument(
        "--backends",
        default="openvino,openvino:f32,onnx,torch,tensorrt",
        help="comma list of backend[:precision]; tensorrt is skipped if absent",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("--size", type=int, help="image side (default: the model's)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--decoders", default="full,tiny", help="full,tiny: tiny is skipped if the model has none")
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU inference threads (default: one per physical core)")
    parser.add_argument("--optimum-python", type=Path, help="a python with optimum-intel (make optimum-venv)")
    args = parser.parse_args(argv)
    console = Console(width=160)  # tables stay whole when piped to a file

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)  # the same threads for torch (and diffusers) as the others get
    model_dir: Path = args.model
    if not (model_dir / "model_index.json").exists():
        parser.error(f"no model at {model_dir} (the shipped one: git checkout -- models/scott-tiny)")
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    step_counts = [int(s) for s in args.steps.split(",")]

    decoders = args.decoders.split(",")
    if "tiny" in decoders and not (model_dir / TINY_SUBFOLDER).is_dir():
        console.print(f"[yellow]tiny decoder skipped: {model_dir} has no {TINY_SUBFOLDER}/[/yellow]")
        decoders.remove("tiny")
    pipelines: dict[str, TextToImagePipeline] = {}
    for name in args.backends.split(","):
        backend, _, precision = name.partition(":")
        if backend == "tensorrt" and missing_requirements(device):
            console.print(f"[yellow]tensorrt skipped: {'; '.join(missing_requirements(device))}[/yellow]")
            continue
        for decoder in decoders:
            options = LoadOptions(backend, args.device, precision or "auto", threads=threads, decoder=decoder)
            pipeline = load_pipeline(model_dir, options)
            suffix = " tiny" if decoder == "tiny" else ""
            pipelines[f"{backend} {pipeline.backend.precision}{suffix}"] = pipeline
    size = args.size or next(iter(pipelines.values())).info.default_size

    console.print(
        f"model {model_dir} | {size}x{size} | device {device} | torch {torch.__version__} | "
        f"{threads} threads | median of {args.repeats} after {args.warmup} warm-up"
    )
    stages = Table(title="Per-stage latency (ms)")
    for column in ("backend", "decoder", "batch", "text encoder", "UNet step", "VAE decode"):
        stages.add_column(column, justify="left" if column in ("backend", "decoder") else "right")
    stage_ms: dict[tuple[str, int], dict[str, float]] = {}
    for batch in batches:  # every pipeline's stages of one batch size in the same rounds
        calls = {
            (name, stage): (fn, pipe.backend.synchronize)
            for name, pipe in pipelines.items()
            for stage, fn in stage_calls(pipe, batch, size).items()
        }
        for (name, stage), ms in interleaved_ms(calls, args.warmup, args.repeats).items():
            stage_ms.setdefault((name, batch), {})[stage] = ms
    for name, pipe in pipelines.items():
        for batch in batches:
            t = stage_ms[(name, batch)]
            row = [name.removesuffix(" tiny"), pipe.info.decoder, str(batch)]
            stages.add_row(*row, f"{t['text']:.2f}", f"{t['unet']:.2f}", f"{t['vae']:.2f}")
    console.print(stages)

    e2e_calls: dict[str, Callable[[int, int], object]] = {
        name: lambda b, s, p=pipe: p.generate(requests(b, s, size)) for name, pipe in pipelines.items()
    }
    syncs = {name: pipe.backend.synchronize for name, pipe in pipelines.items()}
    if not args.no_diffusers:
        peer = diffusers_peer(model_dir, device)

        def run_peer(b: int, s: int) -> object:
            generator = [torch.Generator().manual_seed(i) for i in range(b)]
            prompts = [f"a red circle number {i}" for i in range(b)]
            options = {"num_inference_steps": s, "guidance_scale": GUIDANCE, "height": size, "width": size}
            return peer(prompts, generator=generator, output_type="np", **options)

        e2e_calls["diffusers"] = run_peer
        syncs["diffusers"] = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    e2e: dict[str, dict[tuple[int, int], float]] = {name: {} for name in e2e_calls}
    for b in batches:  # every pipeline (and diffusers) at one batch and step count in the same rounds
        for s in step_counts:
            calls = {name: (lambda f=fn, b=b, s=s: f(b, s), syncs[name]) for name, fn in e2e_calls.items()}
            for name, ms in interleaved_ms(calls, args.warmup, args.repeats).items():
                e2e[name][(b, s)] = ms

    if args.optimum_python:
        # From the repo root, where `-m benchmarks.optimum_peer` finds the package: the model path goes absolute.
        command = [str(args.optimum_python), "-m", "benchmarks.optimum_peer", "--model", str(model_dir.resolve())]
        command += ["--batches", args.batches, "--steps", args.steps, "--size", str(size), "--threads", str(threads)]
        command += ["--guidance", str(GUIDANCE), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
        run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if run.returncode != 0:
            raise SystemExit(f"optimum-intel peer failed:\n{run.stderr[-4000:]}")
        peer = json.loads(run.stdout)
        e2e[f"optimum-intel {peer['optimum_intel']} {peer['precision']}"] = {
            tuple(int(v) for v in key.split(",")): ms for key, ms in peer["e2e"].items()
        }

    table = Table(title="End-to-end latency (ms): prompt -> uint8 images")
    table.add_column("backend")
    for b in batches:
        for s in step_counts:
            table.add_column(f"b{b} {s}-step", justify="right")
    if "diffusers" in e2e:
        table.add_column("vs diffusers b1 1-step", justify="right")
    for name, row in e2e.items():
        cells = [f"{row[(b, s)]:.1f}" for b in batches for s in step_counts]
        if "diffusers" in e2e:
            key = (batches[0], step_counts[0])
            cells.append(f"{e2e['diffusers'][key] / row[key]:.2f}x")
        table.add_row(name, *cells)
    console.print(table)

    ours = next((name for name in e2e if name.startswith("openvino ") and name.split()[1] != "f32"), None)
    ours = ours.removesuffix(" tiny") if ours else None
    for peer_name, batch, steps, target in TARGETS:
        peer_row = next((row for name, row in e2e.items() if name.startswith(peer_name)), None)
        if ours is None or peer_row is None or (batch, steps) not in peer_row:
            continue
        speedup = peer_row[(batch, steps)] / e2e[ours][(batch, steps)]
        verdict = "[green]met[/green]" if speedup >= target else "[red]NOT met[/red]"
        console.print(f"target {ours} >= {target}x {peer_name}, batch {batch} {steps}-step: {speedup:.2f}x {verdict}")
    key = (batches[0], step_counts[0])
    if ours and f"{ours} tiny" in e2e and key == (1, 1):
        measured = {
            "vae": stage_ms[(ours, 1)]["vae"] / stage_ms[(f"{ours} tiny", 1)]["vae"],
            "e2e": e2e[ours][key] / e2e[f"{ours} tiny"][key],
        }
        for what, target in TINY_TARGETS.items():
            verdict = "[green]met[/green]" if measured[what] >= target else "[red]NOT met[/red]"
            label = "VAE decode" if what == "vae" else "end to end"
            console.print(
                f"target {ours} tiny decoder {label} >= {target}x full, b1 1-step: {measured[what]:.2f}x {verdict}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
