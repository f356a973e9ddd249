"""Export a preset model with random weights to ONNX and report sizes, times and errors vs PyTorch.

python -m benchmarks.onnx_export_check --preset sd15 --out benchmarks/results   # SD-1.5 scale
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from engines.onnx_export import export_onnx
from scott.models import build_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"  # only to initialize the weights fast
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model_dir = save_model(build_model(args.preset, seed=0, device=device), Path(tmp) / "model")
        made = time.perf_counter() - start
        start = time.perf_counter()
        manifest = export_onnx(model_dir, Path(tmp) / "onnx", log=print)
        exported = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in (Path(tmp) / "onnx").iterdir()}
    result = {"preset": args.preset, "make_model_s": made, "export_and_check_s": exported, "files": sizes}
    result["manifest"] = manifest
    print(json.dumps({k: v for k, v in result.items() if k != "manifest"}, indent=2))
    for name, network in manifest["networks"].items():
        print(name, "max abs error vs torch:", network.get("max_abs_error"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"onnx_export_{args.preset}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
