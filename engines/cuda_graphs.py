"""CUDA-graph replay of a network call, one captured graph per input shape.

A few-step UNet call at small batch is launch-bound in eager PyTorch (hundreds of kernels, each
launched from Python). Capturing the call once per shape and replaying it removes that overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

TensorFn = Callable[..., torch.Tensor]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor | None, ...]
    output: torch.Tensor


class CudaGraphRunner:
    """Calls fn(*tensors) through a CUDA graph captured the first time each input signature is seen.

    fn must be shape-static and free of host synchronization (true of diffusers' UNet and CLIP).
    Outputs are copied out of the graph's memory, so callers may keep them across replays.
    """

    def __init__(self, fn: TensorFn, warmup_runs: int = 2) -> None:
        self.fn = fn
        self.warmup_runs = warmup_runs
        self.pool = torch.cuda.graph_pool_handle()  # graphs share one memory pool
        self.graphs: dict[tuple, _Captured] = {}

    @staticmethod
    def signature(args: tuple[torch.Tensor | None, ...]) -> tuple:
        return tuple(None if a is None else (tuple(a.shape), a.dtype, a.device) for a in args)

    @torch.inference_mode()
    def __call__(self, *args: torch.Tensor | None) -> torch.Tensor:
        key = self.signature(args)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.graphs[key] = self._capture(args)
        for static, value in zip(captured.inputs, args, strict=True):
            if static is not None:
                static.copy_(value, non_blocking=True)
        captured.graph.replay()
        return captured.output.clone()

    def _capture(self, args: tuple[torch.Tensor | None, ...]) -> _Captured:
        inputs = tuple(None if a is None else a.clone() for a in args)
        # Warm up on a side stream (cuDNN/cuBLAS pick algorithms and allocate workspaces), as
        # torch.cuda.graphs documents, so none of that lands inside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_runs):
                self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.fn(*inputs)
        return _Captured(graph=graph, inputs=inputs, output=output)
