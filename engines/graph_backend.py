"""The DiffusionBackend calls over the three networks of an ONNX export, for runtimes that run those graphs
(ONNX Runtime, OpenVINO): each maps a call to `_run(network, inputs, dims)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from engines.load_options import LoadOptions
from engines.onnx_export import OnnxExport, resolve_onnx_dir
from engines.shapes import TEXT_ENCODER, UNET, VAE_DECODER, NetworkSpec
from scott.decoder import resolve_decoder
from scott.pipeline import TextToImagePipeline

TORCH_DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64, "float16": torch.float16}


def unet_inputs(
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    text_embeddings: torch.Tensor,
    timestep_cond: torch.Tensor | None,
    guidance_embedding_dim: int | None,
) -> dict[str, torch.Tensor]:
    """The exported UNet's inputs by name (every runtime of the export: ONNX Runtime, OpenVINO, TensorRT);
    timestep_cond must come exactly when the UNet has a guidance embedding."""
    has_cond = guidance_embedding_dim is not None
    if has_cond != (timestep_cond is not None):
        raise ValueError(
            "this UNet takes a guidance embedding (timestep_cond)"
            if has_cond
            else "this UNet has no guidance embedding; pass timestep_cond=None"
        )
    inputs = {"sample": latents, "timestep": timesteps, "encoder_hidden_states": text_embeddings}
    if timestep_cond is not None:
        inputs["timestep_cond"] = timestep_cond
    return inputs


class ExportedGraphBackend:
    """encode_text / predict / decode of one export; a subclass runs one network at concrete dims."""

    name: str
    device: torch.device
    export: OnnxExport
    per_shape = False  # dynamic shapes: one session serves every batch size

    def _run(self, network: str, inputs: dict[str, torch.Tensor], dims: dict[str, int]) -> torch.Tensor:
        raise NotImplementedError

    @property
    def specs(self) -> dict[str, NetworkSpec]:
        return self.export.specs

    def _checked_inputs(
        self, network: str, inputs: dict[str, torch.Tensor], dims: dict[str, int]
    ) -> dict[str, torch.Tensor]:
        """The inputs in the graph's order, dtype and device, contiguous, each of the shape the dims give."""
        checked = {}
        for tensor_spec in self.specs[network].inputs:
            value = inputs[tensor_spec.name].to(self.device, TORCH_DTYPES[tensor_spec.dtype]).contiguous()
            expected = tensor_spec.concrete(dims)
            if tuple(value.shape) != expected:
                raise ValueError(f"{network}.{tensor_spec.name}: shape {tuple(value.shape)}, expected {expected}")
            checked[tensor_spec.name] = value
        return checked

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._run(TEXT_ENCODER, {"input_ids": input_ids}, {"batch": input_ids.shape[0]})

    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeddings: torch.Tensor,
        timestep_cond: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, _, height, width = latents.shape
        inputs = unet_inputs(
            latents, timesteps, text_embeddings, timestep_cond, self.export.dims.guidance_embedding_dim
        )
        return self._run(UNET, inputs, {"batch": batch, "height": height, "width": width})

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = latents.shape
        f = self.export.dims.vae_scale_factor
        dims = {"batch": batch, "height": height, "width": width, "image_height": height * f, "image_width": width * f}
        return self._run(VAE_DECODER, {"latents": latents}, dims)

    def synchronize(self) -> None:
        # Both runtimes return once the outputs are written.
        return None


def load_exported_pipeline(
    model_dir: str | Path,
    options: LoadOptions,
    backend_over: Callable[[Path], ExportedGraphBackend],
    log: Callable[[str], None] | None = None,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> TextToImagePipeline:
    """A pipeline whose networks run from the model's ONNX export (found or made by
    engines.onnx_export.resolve_onnx_dir for the options' decoder) on the backend `backend_over` makes of its folder."""
    decoder = resolve_decoder(model_dir, options.decoder)  # before any export: a decoder that does not fit fails now
    backend = backend_over(resolve_onnx_dir(model_dir, onnx_dir, cache_dir, log=log, decoder=decoder))
    return TextToImagePipeline.over_folder(backend, model_dir, backend.export.info(name=Path(model_dir).name))
