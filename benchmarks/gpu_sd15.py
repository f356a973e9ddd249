"""SD-1.5-scale latency on a CUDA GPU: torch eager vs torch + CUDA graphs vs diffusers' own pipeline.

Random weights of the real SD-1.5 / LCM-Dreamshaper architecture (`--preset sd15`, 512x512), fp16,
per-stage and end-to-end latency at batch 1/4/8/16 and 1/2/4 steps, all in one run on one GPU; --tiny-decoder adds
the fastest path again with a random TAESD-architecture decoder (AutoencoderTiny) in place of the VAE's.
Writes a markdown table and JSON to --out (benchmarks/results/ by default), named after the GPU.

    python -m benchmarks.gpu_sd15 --out benchmarks/results
    python -m benchmarks.gpu_sd15 --preset tiny --device cpu --batches 1 2 --reps 2   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import diffusers
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from engines.torch_backend import TorchBackend
from scott.models import build_model
from scott.pipeline import ImageRequest, ModelInfo, TextToImagePipeline
from scott.reference import diffusers_lcm_pipeline

console = Console()


def timed(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> float:
    """Median wall seconds of fn over reps, after warm-up, with the device synchronized around each."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--compile", action="store_true", help="add torch.compile (+ CUDA graphs on CUDA)")
    parser.add_argument(
        "--compile-batches", type=int, nargs="+", default=[1, 16], help="batches to compile for (each compiles anew)"
    )
    parser.add_argument("--tiny-decoder", action="store_true", help="add a row with TAESD's decoder (random weights)")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    start = time.perf_counter()
    with_tiny = build_model(args.preset, seed=0, device=device, tiny_decoder=args.tiny_decoder).to(device, dtype)
    bundle = dataclasses.replace(with_tiny, tiny_decoder=None)  # the full VAE decoder
    console.print(f"built {args.preset} on {gpu} in {time.perf_counter() - start:.1f}s")
    info = ModelInfo.from_bundle(bundle, args.preset)
    size = info.default_size
    params = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in (("text", bundle.text_encoder), ("unet", bundle.unet), ("vae", bundle.vae))
    }

    backends = {"torch eager": TorchBackend(bundle, device, dtype, cuda_graphs=False)}
    if device.type == "cuda":
        backends["torch + CUDA graphs"] = TorchBackend(bundle, device, dtype, cuda_graphs=True)
    compiled = "torch.compile" + (" + CUDA graphs" if device.type == "cuda" else "")
    if args.compile:
        backends[compiled] = TorchBackend(bundle, device, dtype, compile=True)

    tiny = ("torch + CUDA graphs" if device.type == "cuda" else "torch eager") + ", tiny decoder"
    if args.tiny_decoder:
        backends[tiny] = TorchBackend(with_tiny, device, dtype, cuda_graphs=device.type == "cuda")

    def measured(name: str, batch: int) -> bool:
        return name != compiled or batch in args.compile_batches

    pipelines = {
        name: TextToImagePipeline(backend, bundle.tokenizer, bundle.schedule, info)
        for name, backend in backends.items()
    }
    errors: dict[str, str] = {}
    for name in list(backends):
        try:  # one failing backend must not cost the whole (expensive) run
            pipelines[name].generate([ImageRequest("warm up", 0, 2, 8.0, 0.3, info.default_size, info.default_size)])
        except Exception as exc:
            console.print_exception()
            errors[name] = f"{type(exc).__name__}: {exc}"
            del backends[name], pipelines[name]

    results: dict[str, object] = {
        "gpu": gpu,
        "preset": args.preset,
        "size": size,
        "dtype": str(dtype),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "params": params,
        "stages": [],
        "end_to_end": [],
        "errors": errors,
        # the tiny decoder draws other pixels by design: parity is of the full decoder's paths
        "parity": parity({k: v for k, v in pipelines.items() if k != tiny}, bundle, info),
    }
    console.print(results["parity"])

    # -- per stage ---------------------------------------------------------------------------------
    latent = size // info.vae_scale_factor
    for batch in args.batches:
        ids = torch.full((batch, 77), 49407, dtype=torch.long, device=device)
        ids[:, 0] = 49406
        z = torch.randn(batch, 4, latent, latent, device=device)
        t = torch.full((batch,), 999, dtype=torch.long, device=device)
        for name, backend in backends.items():
            if not measured(name, batch):
                continue
            text = backend.encode_text(ids)
            cond = torch.randn(batch, info.guidance_embedding_dim or 1, device=device)
            row = {
                "backend": name,
                "batch": batch,
                "text_ms": 1e3 * timed(lambda b=backend, i=ids: b.encode_text(i), device, args.reps),
                "unet_ms": 1e3
                * timed(lambda b=backend, a=z, s=t, x=text, c=cond: b.predict(a, s, x, c), device, args.reps),
                "vae_ms": 1e3 * timed(lambda b=backend, a=z: b.decode(a), device, max(2, args.reps // 2)),
            }
            results["stages"].append(row)
            console.print(row)

    # -- end to end: our pipeline vs diffusers' pipeline on the same modules -----------------------
    reference = diffusers_lcm_pipeline(bundle)
    prompt = "a photo of a red fox in the snow, highly detailed"
    for batch in args.batches:
        for steps in args.steps:
            requests = [ImageRequest(prompt, i, steps, 8.0, 0.3, size, size) for i in range(batch)]
            for name, pipeline in pipelines.items():
                if not measured(name, batch):
                    continue
                seconds = timed(lambda p=pipeline, r=requests: p.generate(r), device, args.reps)
                results["end_to_end"].append({"impl": name, "batch": batch, "steps": steps, "ms": 1e3 * seconds})

            def run_reference(b: int = batch, s: int = steps) -> np.ndarray:
                return reference(
                    prompt,
                    num_inference_steps=s,
                    guidance_scale=8.0,
                    num_images_per_prompt=b,
                    height=size,
                    width=size,
                    generator=torch.Generator().manual_seed(0),
                    output_type="np",
                ).images

            seconds = timed(run_reference, device, max(2, args.reps // 2))
            results["end_to_end"].append(
                {"impl": "diffusers LCM pipeline", "batch": batch, "steps": steps, "ms": 1e3 * seconds}
            )
            console.print(results["end_to_end"][-len(pipelines) - 1 :])

    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        results["vae_variants"] = vae_variants(backends["torch eager"], latent, args.reps)
        console.print(results["vae_variants"])
        del pipelines, backends, reference, bundle
        torch.cuda.empty_cache()
        # fp16 sampler math in diffusers vs fp32 in ours: show the fp32 agreement on the GPU too.
        bundle32 = build_model(args.preset, seed=0, device=device)
        eager32 = TorchBackend(bundle32, device, torch.float32, cuda_graphs=False)
        pipeline32 = TextToImagePipeline(eager32, bundle32.tokenizer, bundle32.schedule, info)
        results["parity"].update(
            {f"fp32 {k}": v for k, v in parity({"torch eager": pipeline32}, bundle32, info).items()}
        )
    report(results, args.out)


def vae_variants(backend: TorchBackend, latent: int, reps: int) -> list[dict]:
    """VAE decode latency by memory format and with CUDA-graph replay (the decoder dominates 1-step latency)."""
    from engines.cuda_graphs import CudaGraphRunner

    rows = []
    vae = backend.vae
    for batch in (1, 8):
        z = torch.randn(batch, 4, latent, latent, device=backend.device, dtype=backend.dtype)
        for fmt_name, fmt in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
            vae.to(memory_format=fmt)
            with torch.inference_mode():
                eager = timed(lambda v=vae, a=z: v.decode(a).sample, backend.device, reps)
                graphed = CudaGraphRunner(lambda a, v=vae: v.decode(a).sample)
                replay = timed(lambda g=graphed, a=z: g(a), backend.device, reps)
            rows.append({"batch": batch, "format": fmt_name, "eager_ms": 1e3 * eager, "graph_ms": 1e3 * replay})
    vae.to(memory_format=torch.contiguous_format)  # what TorchBackend uses
    return rows


def parity(pipelines: dict[str, TextToImagePipeline], bundle, info: ModelInfo) -> dict[str, float]:
    """Pixel differences (0-255) that would expose a wrong fast path: graphs vs eager, ours vs diffusers."""
    size = info.default_size
    out: dict[str, float] = {}
    requests = [ImageRequest(f"a red fox number {i}", i, 4, 8.0, 0.3, size, size) for i in range(4)]
    images = {name: p.generate(requests).images.astype(np.int16) for name, p in pipelines.items()}
    names = list(images)
    for other in names[1:]:
        diff = np.abs(images[other] - images[names[0]])
        out[f"{other} vs {names[0]}: mean abs px"] = float(diff.mean())
        out[f"{other} vs {names[0]}: max abs px"] = float(diff.max())
    lcm = ImageRequest("a red fox", 0, 4, 8.0, 1.0, size, size)
    ours = pipelines[names[0]].generate([lcm]).images.astype(np.int16)
    theirs = diffusers_lcm_pipeline(bundle)(
        lcm.prompt,
        num_inference_steps=4,
        guidance_scale=8.0,
        height=size,
        width=size,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    diff = np.abs(ours - (theirs * 255).round().astype(np.int16))
    out[f"{names[0]} (gamma 1) vs diffusers LCM pipeline: mean abs px"] = float(diff.mean())
    out[f"{names[0]} (gamma 1) vs diffusers LCM pipeline: max abs px"] = float(diff.max())
    return out


def report(results: dict, out_dir: Path) -> None:
    impls = list(dict.fromkeys(row["impl"] for row in results["end_to_end"]))
    e2e = Table(title=f"End-to-end latency, ms ({results['preset']} {results['size']}px, {results['gpu']})")
    e2e.add_column("batch")
    e2e.add_column("steps")
    for impl in impls:
        e2e.add_column(impl, justify="right")
    e2e.add_column("images/s (best)", justify="right")
    keyed = {(r["impl"], r["batch"], r["steps"]): r["ms"] for r in results["end_to_end"]}
    lines = ["| batch | steps | " + " | ".join(impls) + " | images/s (best) |", "|---" * (len(impls) + 3) + "|"]
    for batch, steps in dict.fromkeys((r["batch"], r["steps"]) for r in results["end_to_end"]):
        cells = [keyed[(impl, batch, steps)] for impl in impls]
        best = batch / (min(cells) / 1e3)
        e2e.add_row(str(batch), str(steps), *(f"{c:.1f}" for c in cells), f"{best:.1f}")
        lines.append(f"| {batch} | {steps} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {best:.1f} |")

    stages = Table(title="Per-stage latency, ms")
    stage_lines = [
        "| backend | batch | text encoder | one UNet step | UNet steps/s | VAE decode |",
        "|---|---|---|---|---|---|",
    ]
    for column in ("backend", "batch", "text", "UNet step", "UNet steps/s", "VAE decode"):
        stages.add_column(column)
    for row in results["stages"]:
        cells = (
            row["backend"],
            str(row["batch"]),
            f"{row['text_ms']:.2f}",
            f"{row['unet_ms']:.2f}",
            f"{1e3 / row['unet_ms']:.1f}",
            f"{row['vae_ms']:.2f}",
        )
        stages.add_row(*cells)
        stage_lines.append("| " + " | ".join(cells) + " |")
    console.print(stages)
    console.print(e2e)

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_{results['preset']}_" + "".join(c if c.isalnum() else "_" for c in results["gpu"]).strip("_")
    header = (
        f"# {results['preset']} at {results['size']}x{results['size']}, {results['dtype']}, random weights\n\n"
        f"GPU: {results['gpu']}; torch {results['torch']}; diffusers {results['diffusers']}; "
        f"params {results['params']}; peak memory {results.get('peak_memory_gib', 0):.1f} GiB.\n"
        "Medians after warm-up, device synchronized around each call; guidance 8 via the UNet's "
        "guidance embedding (one UNet call per step), gamma 0.3.\n\n"
    )
    notes = "".join(f"- {k}: {v:.3f}\n" for k, v in results["parity"].items())
    notes += "".join(f"- FAILED {k}: {v}\n" for k, v in results["errors"].items())
    for row in results.get("vae_variants", []):
        if not notes.endswith("|\n"):
            notes += (
                "\n## VAE decode variants, ms\n\n| batch | memory format | eager | CUDA graph |\n|---|---|---|---|\n"
            )
        notes += f"| {row['batch']} | {row['format']} | {row['eager_ms']:.2f} | {row['graph_ms']:.2f} |\n"
    body = (
        "## Checks (pixel differences, 0-255)\n\n"
        + notes
        + "\n## Per stage\n\n"
        + "\n".join(stage_lines)
        + "\n\n## End to end\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (out_dir / f"{stem}.md").write_text(header + body)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2))
    console.print(f"wrote {out_dir / stem}.md and .json")


if __name__ == "__main__":
    main()
