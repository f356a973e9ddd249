"""The peer a CPU user would pick: optimum-intel's OVLatentConsistencyModelPipeline, timed as benchmarks.backend_latency
times ours, and printed as one JSON object {"precision": ..., "e2e": {"BATCH,STEPS": ms}}.

optimum-intel pins transformers below the version this project runs, so it lives in its own venv (make optimum-venv)
and `-m benchmarks.backend_latency --optimum-python .venv-optimum/bin/python` runs this module there, in the same run.
The pipeline is exported from the same folder (optimum's own exporter), reshaped to static shapes per batch as
optimum-intel's docs advise for the CPU, with the same thread count and OpenVINO's default precision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--guidance", type=float, default=8.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    import numpy as np
    import openvino as ov
    from optimum.intel import OVLatentConsistencyModelPipeline

    ov_config = {"INFERENCE_NUM_THREADS": str(args.threads), "PERFORMANCE_HINT": "LATENCY"}
    with tempfile.TemporaryDirectory() as out:
        exported = OVLatentConsistencyModelPipeline.from_pretrained(args.model, export=True, compile=False)
        exported.save_pretrained(out)
        pipe = OVLatentConsistencyModelPipeline.from_pretrained(out, compile=False, ov_config=ov_config)
        pipe.set_progress_bar_config(disable=True)
        e2e: dict[str, float] = {}
        for batch in (int(b) for b in args.batches.split(",")):
            pipe.reshape(batch_size=batch, height=args.size, width=args.size, num_images_per_prompt=1)
            # optimum-intel 2.2 sizes the VAE decoder's batch by num_images_per_prompt alone, so a batch of several
            # prompts fails to decode; its own helper gives the decoder the batch the pipeline hands it.
            vae = pipe.vae_decoder
            vae.model = pipe._reshape_vae_decoder(vae.model, args.size, args.size, batch)
            pipe.compile()
            prompts = [f"a red circle number {i}" for i in range(batch)]
            for steps in (int(s) for s in args.steps.split(",")):

                def run(steps: int = steps, prompts: list[str] = prompts) -> object:
                    options = {"num_inference_steps": steps, "guidance_scale": args.guidance}
                    images = pipe(prompts, height=args.size, width=args.size, output_type="np", **options).images
                    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)  # uint8, as ours returns

                for _ in range(args.warmup):
                    run()
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
                e2e[f"{batch},{steps}"] = statistics.median(times) * 1e3
    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()  # e.g. bf16
    json.dump({"precision": precision, "optimum_intel": _version("optimum-intel"), "e2e": e2e}, sys.stdout)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    raise SystemExit(main())
