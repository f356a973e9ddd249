"""The server a user would otherwise write: FastAPI + diffusers' LatentConsistencyModelPipeline, one request at a time.

The baseline of benchmarks.load. It loads the same diffusers-format folder as `scott serve`, in the same
precision (fp32 on the CPU, fp16 on CUDA), and answers POST /generate with the PNG of one image; a lock
serializes the pipeline (a diffusers pipeline holds a scheduler with state, so concurrent calls are unsafe).

    .venv/bin/python -m benchmarks.naive_server --model models/scott-tiny --port 8001
"""

from __future__ import annotations

import argparse
import io
import random
import threading
from pathlib import Path

import torch
import uvicorn
from diffusers import LatentConsistencyModelPipeline
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    steps: int = Field(4, ge=1, le=8)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    guidance_scale: float = 8.0


def create_app(model_dir: Path, device: str) -> FastAPI:
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = LatentConsistencyModelPipeline.from_pretrained(str(model_dir), torch_dtype=dtype, local_files_only=True)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    lock = threading.Lock()
    app = FastAPI(title="naive diffusers server")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}  # the model loads before uvicorn listens

    @app.post("/generate")
    def generate(body: GenerateBody) -> Response:  # a plain def: FastAPI runs it in its thread pool
        seed = body.seed if body.seed is not None else random.randrange(2**32)
        generator = torch.Generator(device).manual_seed(seed)
        with lock, torch.inference_mode():
            image = pipe(
                body.prompt, num_inference_steps=body.steps, guidance_scale=body.guidance_scale, generator=generator
            ).images[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers={"X-Seed": str(seed)})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/scott-tiny"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model, args.device), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
