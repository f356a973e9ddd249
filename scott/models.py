"""Diffusers-format model folders: load one from disk, or make one with random weights from a preset.

A folder has model_index.json, tokenizer/, text_encoder/, unet/, vae/ and scheduler/, the layout
of SD-1.5 and LCM-Dreamshaper on the Hugging Face hub, so those folders load unchanged. Beside model_index.json
it may have serving.json (SERVING_FILE: example prompts in the model's vocabulary, the sizes it serves well),
which diffusers ignores.
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from scott.decoder import FULL_DECODER, TINY_SUBFOLDER, DecoderChoice, build_tiny_decoder, load_tiny_decoder
from scott.schedule import NoiseSchedule
from scott.tokenizer import load_tokenizer, write_clip_tokenizer

SUBFOLDERS = ("tokenizer", "text_encoder", "unet", "vae", "scheduler")
SERVING_FILE = "serving.json"  # optional, beside model_index.json: ServingCard


@dataclass(frozen=True)
class ServingCard:
    """What a model folder says about serving it (its SERVING_FILE; a folder without one gets these defaults).

    serving.json: {"examples": ["a prompt", ...], "sizes": [64]}, both keys optional.
    """

    examples: tuple[str, ...] = ()  # prompts in the model's own vocabulary, offered to users (GET /info)
    sizes: tuple[int, ...] | None = None  # the sides (width and height each) it serves well; None: all it can make

    def to_json(self) -> dict[str, Any]:
        return {"examples": list(self.examples), **({"sizes": list(self.sizes)} if self.sizes is not None else {})}


def load_serving_card(model_dir: str | Path) -> ServingCard:
    """The folder's SERVING_FILE, checked (ValueError naming the file and what is wrong); defaults without one."""
    path = Path(model_dir) / SERVING_FILE
    if not path.is_file():
        return ServingCard()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) - {"examples", "sizes"}:
        raise ValueError(f'{path}: must be a JSON object with only "examples" and "sizes"')
    examples = data.get("examples", [])
    if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
        raise ValueError(f"{path}: examples must be a list of non-empty prompts")
    sizes = data.get("sizes")
    if sizes is not None and (
        not isinstance(sizes, list)
        or not sizes
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise ValueError(f"{path}: sizes must be a non-empty list of positive integers (pixels per side)")
    return ServingCard(tuple(examples), tuple(sorted(set(sizes))) if sizes is not None else None)


def write_serving_card(model_dir: str | Path, card: ServingCard) -> Path:
    path = Path(model_dir) / SERVING_FILE
    path.write_text(json.dumps(card.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


@dataclass
class ModelBundle:
    """The parts of a text-to-image model, loaded into memory."""

    path: Path | None
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler_config: dict[str, Any]
    tiny_decoder: AutoencoderTiny | None = None  # served in place of the VAE's decoder when set (scott.decoder)

    @property
    def decoder(self) -> AutoencoderKL | AutoencoderTiny:
        """What turns latents into pixels: the tiny decoder when one was loaded, else the VAE."""
        return self.tiny_decoder if self.tiny_decoder is not None else self.vae

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_config(self.scheduler_config)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        """The image side the UNet was built for (sample_size latents times the VAE factor)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def has_guidance_embedding(self) -> bool:
        """LCM-style UNets take the guidance scale as an embedding: one UNet call per step."""
        return self.unet.config.time_cond_proj_dim is not None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ModelBundle:
        for module in (self.text_encoder, self.unet, self.vae, self.tiny_decoder):
            if module is None:
                continue
            module.to(device=device, dtype=dtype)
        return self


def read_scheduler_config(model_dir: str | Path) -> dict[str, Any]:
    """The folder's scheduler/scheduler_config.json: the noise schedule every backend samples on."""
    return json.loads((Path(model_dir) / "scheduler" / "scheduler_config.json").read_text())


def require_model_folder(path: str | Path) -> Path:
    """The folder, if it has every subfolder a model needs; FileNotFoundError naming the missing ones if not."""
    root = Path(path)
    missing = [f"{name}/" for name in SUBFOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} is not a diffusers model folder: missing {', '.join(missing)}")
    return root


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, decoder: DecoderChoice = FULL_DECODER
) -> ModelBundle:
    """Load a diffusers-format folder from local disk (never from a hub), with the tiny decoder if one is chosen
    (scott.decoder.resolve_decoder; one that does not fit the model's latents raises DecoderMismatch)."""
    root = require_model_folder(path)
    common: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
    bundle = ModelBundle(
        path=root,
        tokenizer=load_tokenizer(root / "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(str(root / "text_encoder"), **common),
        unet=UNet2DConditionModel.from_pretrained(str(root / "unet"), **common),
        vae=AutoencoderKL.from_pretrained(str(root / "vae"), **common),
        scheduler_config=read_scheduler_config(root),
    )
    for module in (bundle.text_encoder, bundle.unet, bundle.vae):
        module.eval().requires_grad_(False)
    if decoder.is_tiny:
        bundle.tiny_decoder = load_tiny_decoder(decoder, bundle.vae, dtype)
    return bundle


# -- presets ---------------------------------------------------------------------------------------

_SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "time_cond_proj_dim": 256,  # LCM-Dreamshaper's guidance embedding
}
_SD15_VAE: dict[str, Any] = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}
_SD15_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
_SD15_SCHEDULER: dict[str, Any] = {
    "_class_name": "LCMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "original_inference_steps": 50,
    "timestep_scaling": 10.0,
    "set_alpha_to_one": True,
    "steps_offset": 1,
}

# The embedded model's shape: 64x64 images, 8x8x4 latents (SD's 8x VAE), a 128-wide CLIP,
# sized from the latency probes in shared/notes (a few ms per UNet call on 2 CPU cores).
# Zero-terminal-SNR with v-prediction, so flat background colours are reachable from noise.
_TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [64, 128],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 128,
    "attention_head_dim": 4,
    "norm_num_groups": 32,
    "time_cond_proj_dim": 64,
}
_TINY_VAE: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [32, 64, 128, 128],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    # 8, not SD's 32: 32 groups on the 32-channel level make GroupNorm an InstanceNorm, which erases
    # flat background colours (measured: PSNR 11.5 dB vs 15.1 dB after 60 steps, scott/recipe/README.md).
    "norm_num_groups": 8,
    "scaling_factor": 1.0,
}
_TINY_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 128,
}
_TINY_SCHEDULER: dict[str, Any] = {
    **_SD15_SCHEDULER,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
}

# Tiny decoders (AutoencoderTiny) for the presets' 8x VAEs: TAESD's architecture for sd15, a 32-wide one for tiny.
_SD15_VAE_TINY: dict[str, Any] = {"decoder_block_out_channels": [64] * 4, "num_decoder_blocks": [3, 3, 3, 1]}
_TINY_VAE_TINY: dict[str, Any] = {"decoder_block_out_channels": [32] * 4, "num_decoder_blocks": [1, 1, 1, 1]}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "unet": _TINY_UNET,
        "vae": _TINY_VAE,
        "vae_tiny": _TINY_VAE_TINY,
        "text": _TINY_TEXT,
        "scheduler": _TINY_SCHEDULER,
    },
    "sd15": {
        "unet": _SD15_UNET,
        "vae": _SD15_VAE,
        "vae_tiny": _SD15_VAE_TINY,
        "text": _SD15_TEXT,
        "scheduler": _SD15_SCHEDULER,
    },
}


# Example prompts for a tiny-preset model trained on the procedural shapes data (scott.data.attributes: one shape
# with its size, colour, position and background), every background of the data among them.
TINY_EXAMPLES: tuple[str, ...] = (
    "a large green circle in the center on a white background",
    "a medium red square in the top left on a gray background",
    "a large yellow star in the center on a blue background",
    "a small cyan triangle in the bottom right on a black background",
    "a medium blue cross in the center right on a white background",
    "a large orange circle in the bottom center on a green background",
    "a medium pink square in the top right on a black background",
    "a large purple triangle in the center left on a red background",
)
PRESET_EXAMPLES: dict[str, tuple[str, ...]] = {"tiny": TINY_EXAMPLES}  # what `scott make-model` writes


def build_model(
    preset: str, seed: int = 0, device: torch.device | str = "cpu", tiny_decoder: bool = False
) -> ModelBundle:
    """A model of a preset's architecture with random weights, deterministic from the seed (and, with tiny_decoder,
    a random AutoencoderTiny decoder of the preset's, which save_model writes as vae_tiny/)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    spec = PRESETS[preset]
    torch.manual_seed(seed)
    with torch.device(device):
        text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text"]))
        unet = UNet2DConditionModel.from_config(spec["unet"])
        vae = AutoencoderKL.from_config(spec["vae"])
    with tempfile.TemporaryDirectory(prefix="scott-tokenizer-") as tmp:
        tokenizer = load_tokenizer(write_clip_tokenizer(Path(tmp)))
    return ModelBundle(
        path=None,
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        unet=unet.eval(),
        vae=vae.eval(),
        scheduler_config=dict(spec["scheduler"]),
        tiny_decoder=build_tiny_decoder(vae, spec["vae_tiny"], seed + 1).to(device) if tiny_decoder else None,
    )


def save_model(bundle: ModelBundle, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write a diffusers-format folder: safetensors weights in `dtype`, configs, CLIP tokenizer files."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    write_clip_tokenizer(root / "tokenizer")
    modules = {"text_encoder": bundle.text_encoder, "unet": bundle.unet, "vae": bundle.vae}
    if bundle.tiny_decoder is not None:
        modules[TINY_SUBFOLDER] = bundle.tiny_decoder
    for name, module in modules.items():
        copy.deepcopy(module).to(dtype).save_pretrained(str(root / name), safe_serialization=True)
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(bundle.scheduler_config, indent=2))
    model_index = {
        "_class_name": "LatentConsistencyModelPipeline",
        "_diffusers_version": "0.32.0",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", bundle.scheduler_config.get("_class_name", "LCMScheduler")],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(model_index, indent=2))
    return root
