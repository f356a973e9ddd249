"""The embedded-model recipe on tiny budgets: every stage runs, produces loadable artifacts, resumes exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scott.decoder import resolve_decoder
from scott.models import PRESETS, build_model, load_model, load_serving_card, save_model
from scott.recipe.config import RecipeConfig, config_from_dict, load_config
from scott.recipe.embedded import SERVING, main, run_recipe
from scott.recipe.latents import load_latents
from scott.recipe.teacher import run_teacher_stage, teacher_dir
from scott.recipe.tiny_decoder import run_tiny_decoder_stage
from scott.recipe.vae import run_vae_stage, vae_dir
from scott.tokenizer import load_tokenizer, write_clip_tokenizer
from scott.train.checkpoints import Checkpoints

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**teacher: object) -> RecipeConfig:
    """A few steps per stage, evaluation off, distillation off."""
    return config_from_dict(
        {
            "seed": 3,
            "threads": 1,
            "vae": {"steps": 3, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2, "scale_samples": 8,
                    "eval_samples": 8, "arch": {"norm_num_groups": 8}},
            "latents": {"count": 12, "batch_size": 8},
            "teacher": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "eval_prompts": 0,
                        **teacher},
            "distill": {"enabled": False},
        }
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: what the tiny config asks for, and far faster than two on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def run(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete tiny run up to the exported teacher."""
    out = tmp_path_factory.mktemp("recipe") / "run"
    run_recipe(out, tiny_config(), until="distill")
    return out


def _log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stages_produce_loadable_artifacts(run: Path) -> None:
    vae_state = json.loads((run / "vae" / "state.json").read_text())
    assert vae_state["complete"] and vae_state["scaling_factor"] > 0
    assert {"psnr", "psnr_min"} <= set(vae_state["metrics"])
    vae_config = json.loads((vae_dir(run) / "config.json").read_text())
    assert vae_config["scaling_factor"] == pytest.approx(vae_state["scaling_factor"])
    assert vae_config["norm_num_groups"] == 8  # the [vae] arch override, recorded in the folder

    data = load_latents(run)
    foreground = data.extras["foreground"].float()
    assert data.mean.shape == data.std.shape == (12, 4, 8, 8) and data.extras["input_ids"].shape == (12, 77)
    assert len(data.captions) == 12 and all(c.startswith("a ") for c in data.captions)
    # The cache holds scaled latents: the VAE's own encoding of the first image, times its scaling factor.
    assert float(data.mean.std()) > 0
    # Foreground maps: the covered fraction of each latent cell, in [0, 1]; every image has a shape and a background.
    assert foreground.shape == (12, 1, 8, 8)
    assert float(foreground.min()) >= 0 and float(foreground.max()) <= 1
    covered = foreground.mean(dim=(1, 2, 3))
    assert (covered > 0).all() and (covered < 0.5).all()

    for stage, steps in (("vae", 3), ("teacher", 3)):
        records = _log_lines(run / stage / "log.jsonl")
        assert [r["step"] for r in records] == list(range(1, steps + 1))
        assert all(r["loss"] > 0 and r["seconds"] > 0 for r in records)


def test_teacher_folder_loads_and_serves(run: Path) -> None:
    from engines.load_options import LoadOptions
    from engines.loader import load_pipeline
    from scott.pipeline import ImageRequest

    bundle = load_model(teacher_dir(run))
    assert bundle.unet.config.time_cond_proj_dim is None  # real CFG; scott.distill adds the guidance embedding
    assert bundle.scheduler_config["prediction_type"] == "v_prediction"
    assert bundle.scheduler_config["rescale_betas_zero_snr"] is True
    assert bundle.vae.config.scaling_factor == pytest.approx(json.loads((run / "vae/state.json").read_text())[
        "scaling_factor"], rel=1e-3)  # fmt: skip
    pipeline = load_pipeline(teacher_dir(run), LoadOptions(backend="torch", device="cpu"))
    out = pipeline.generate(
        [ImageRequest("a red circle", seed=1, steps=2, guidance_scale=3.0, gamma=0.0, width=64, height=64)]
    )
    assert out.images.shape == (1, 64, 64, 3) and out.images.dtype.name == "uint8"
    exported = run / "final"
    assert (exported / "model_index.json").is_file() and (exported / "unet").is_dir()


def test_saved_teacher_is_the_ema(run: Path) -> None:
    """The folder holds the EMA weights (fp16) of the last checkpoint, not the raw ones."""
    bundle = load_model(teacher_dir(run))
    [(_, checkpoint)] = Checkpoints(run / "teacher" / "checkpoints").complete()  # the stage keeps its latest only
    # accelerate's layout: prepared models in order (text encoder, UNet), then the registered EMA modules
    raw = load_file(str(checkpoint / "model_1.safetensors"))
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=True)
    for name, value in bundle.unet.state_dict().items():
        torch.testing.assert_close(value, ema[name].half().float())
    assert not torch.equal(raw["conv_in.weight"].half().float(), bundle.unet.state_dict()["conv_in.weight"])


def test_resume_skips_complete_stages(run: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in run.glob("*/state.json")}
    logs = {p: p.read_text() for p in run.glob("*/log.jsonl")}
    run_recipe(run, tiny_config(), until="distill")
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/state.json")} == before
    assert {p: p.read_text() for p in run.glob("*/log.jsonl")} == logs


def test_changed_stage_config_is_refused(run: Path, tmp_path: Path) -> None:
    shutil.copytree(run / "vae", tmp_path / "vae")
    changed = tiny_config()
    changed.vae.lr = 0.5
    with pytest.raises(ValueError, match="another \\[vae\\] config"):
        run_vae_stage(tmp_path, changed)


def test_interrupted_vae_resumes_to_the_same_weights(tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg.vae.steps, cfg.vae.checkpoint_every = 4, 100
    assert run_vae_stage(tmp_path / "straight", cfg)
    assert not run_vae_stage(tmp_path / "broken", cfg, stop_after=2)  # a checkpoint at step 2, then "killed"
    assert [step for step, _ in Checkpoints(tmp_path / "broken/vae/checkpoints").complete()] == [2]
    assert run_vae_stage(tmp_path / "broken", cfg)
    a = load_file(str(vae_dir(tmp_path / "straight") / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(vae_dir(tmp_path / "broken") / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _log_lines(tmp_path / "straight/vae/log.jsonl") == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(_log_lines(tmp_path / "broken/vae/log.jsonl"), _log_lines(tmp_path / "straight/vae/log.jsonl"),
                        strict=True)
    ]  # fmt: skip


def test_interrupted_teacher_resumes_to_the_same_weights(run: Path, tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg.teacher.steps, cfg.teacher.checkpoint_every = 4, 100
    tokenizer = load_tokenizer(write_clip_tokenizer(tmp_path / "tokenizer"))
    for name in ("straight", "broken"):
        for stage in ("vae", "latents"):
            shutil.copytree(run / stage, tmp_path / name / stage)
    assert run_teacher_stage(tmp_path / "straight", cfg, tokenizer)
    assert not run_teacher_stage(tmp_path / "broken", cfg, tokenizer, stop_after=3)
    assert run_teacher_stage(tmp_path / "broken", cfg, tokenizer)
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a = load_file(str(teacher_dir(tmp_path / "straight") / part))
        b = load_file(str(teacher_dir(tmp_path / "broken") / part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part


def test_cli_refuses_a_used_out_dir_without_resume(run: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(run), "--until", "vae"])


@pytest.mark.parametrize("name", ["embedded.toml", "embedded-quick.toml"])
def test_shipped_recipes_parse(name: str) -> None:
    cfg = load_config(REPO / "configs" / "recipe" / name)
    assert cfg.preset == "tiny" and cfg.vae.steps > 0 and cfg.teacher.steps > 0


def test_quick_recipe_builds_the_shipped_networks() -> None:
    """The smoke recipe differs from the shipped one in budgets only: the same networks and text-encoder settings."""
    full, quick = (load_config(REPO / "configs" / "recipe" / name) for name in ("embedded.toml", "embedded-quick.toml"))
    assert quick.preset == full.preset
    assert quick.vae.arch == full.vae.arch and quick.teacher.arch == full.teacher.arch
    assert quick.tiny_decoder.arch == full.tiny_decoder.arch
    assert quick.vae.foreground_weight == full.vae.foreground_weight
    for name in ("text_lr_scale", "token_embedding_scale", "foreground_weight", "sample_posterior", "caption_dropout"):
        assert getattr(quick.teacher, name) == getattr(full.teacher, name), name
    budget = {"steps", "checkpoint_every"}
    assert {k: v for k, v in quick.distill.options.items() if k not in budget} == {
        k: v for k, v in full.distill.options.items() if k not in budget
    }


def test_unknown_config_fields_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        config_from_dict({"teacher": {"stepz": 3}})


TINY_DECODER = {"steps": 3, "batch_size": 4, "pool_size": 8, "checkpoint_every": 2, "eval_samples": 4,
                "arch": PRESETS["tiny"]["vae_tiny"]}  # fmt: skip


def test_distill_and_tiny_decoder_stages_export_the_student_with_its_tiny_decoder(run: Path, tmp_path: Path) -> None:
    """The hook hands the teacher to the real scott.distill trainer; the tiny decoder is distilled beside the
    student; the export holds the model parts only, vae_tiny/ included."""
    work = tmp_path / "run"
    shutil.copytree(run, work)
    cfg = tiny_config()
    cfg.distill.enabled, cfg.distill.data = True, "procedural:8"
    cfg.distill.options = {"steps": 1, "batch_size": 2, "checkpoint_every": 0}
    cfg.tiny_decoder = config_from_dict({"tiny_decoder": TINY_DECODER}).tiny_decoder
    final = run_recipe(work, cfg, export=tmp_path / "exported")
    assert sorted(p.name for p in final.iterdir()) == [
        "model_index.json", "scheduler", "serving.json", "text_encoder", "tokenizer", "unet", "vae", "vae_tiny"
    ]  # fmt: skip
    assert load_serving_card(final) == SERVING  # example prompts, and the one size it was trained at
    student = load_model(final, decoder=resolve_decoder(final, "tiny"))
    assert student.unet.config.time_cond_proj_dim is not None  # the guidance embedding the distiller added
    assert student.tiny_decoder is not None
    weights = load_file(str(final / "vae_tiny" / "diffusion_pytorch_model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float16}
    assert json.loads((work / "distill" / "state.json").read_text())["complete"]
    metrics = json.loads((work / "tiny_decoder" / "state.json").read_text())["metrics"]
    assert set(metrics) == {"psnr_posterior", "psnr_posterior_min", "psnr_student", "psnr_student_min"}


def test_interrupted_tiny_decoder_resumes_to_the_same_weights(tmp_path: Path) -> None:
    model = save_model(build_model("tiny", seed=2), tmp_path / "model")
    cfg = config_from_dict({"seed": 3, "threads": 1, "tiny_decoder": TINY_DECODER})
    broken = tmp_path / "broken-model"
    shutil.copytree(model, broken)
    assert not run_tiny_decoder_stage(tmp_path / "broken", cfg, broken, stop_after=2)  # checkpoint at 2, "killed"
    assert not (broken / "vae_tiny").exists()
    assert run_tiny_decoder_stage(tmp_path / "broken", cfg, broken)
    assert run_tiny_decoder_stage(tmp_path / "whole", cfg, model)
    resumed = load_file(str(broken / "vae_tiny" / "diffusion_pytorch_model.safetensors"))
    whole = load_file(str(model / "vae_tiny" / "diffusion_pytorch_model.safetensors"))
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_teacher_evaluation_scores_samples_and_writes_grids(run: Path, tmp_path: Path) -> None:
    from scott.recipe.config import TeacherConfig
    from scott.recipe.teacher import evaluate_teacher

    tc = TeacherConfig(eval_prompts=2, eval_per_prompt=3, eval_steps=(1, 2), eval_guidance=4.0)
    metrics = evaluate_teacher(teacher_dir(run), tmp_path, tc)
    assert set(metrics) == {"ddim1", "ddim2"}
    for m in metrics.values():
        assert m["n_images"] == 6 and 0.0 <= m["prompt_accuracy"] <= 1.0 and m["fid"] >= 0.0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    from PIL import Image

    assert Image.open(tmp_path / "samples-ddim2.png").size == (8 * 64, 2 * 64)


def test_foreground_mask_marks_the_shape_not_the_background() -> None:
    from scott.data.dataset import make_batch
    from scott.recipe.vae import foreground_mask

    images = make_batch("train", 0, 16).images
    mask = foreground_mask(images)
    assert mask.shape == (16, 1, 64, 64)
    assert (mask[..., 0, :].mean() + mask[..., -1, :].mean()) < 0.05  # borders are background
    coverage = mask.mean(dim=(1, 2, 3))
    assert (coverage > 0.005).all() and (coverage < 0.5).all()  # every image has a shape, none is all shape


def test_teacher_unet_follows_the_vae_latent_channels() -> None:
    from scott.recipe.teacher import build_teacher_networks

    _, unet = build_teacher_networks("tiny", 0, latent_channels=16)
    assert unet.config.in_channels == unet.config.out_channels == 16
    assert unet.config.time_cond_proj_dim is None
    _, default = build_teacher_networks("tiny", 0)
    assert default.config.in_channels == 4


def test_teacher_unet_takes_arch_fields_and_the_latent_side() -> None:
    from scott.recipe.teacher import build_teacher_networks

    _, unet = build_teacher_networks(
        "tiny", 0, latent_channels=4, latent_size=16, arch={"block_out_channels": [32, 64], "sample_size": 99}
    )
    assert list(unet.config.block_out_channels) == [32, 64]
    assert unet.config.sample_size == 16  # the latents' side wins over any arch value
    assert unet.config.time_cond_proj_dim is None


def test_diffusion_loss_weights_latent_cells() -> None:
    from scott.recipe.teacher import build_teacher_networks, diffusion_loss
    from scott.schedule import NoiseSchedule

    text_encoder, unet = build_teacher_networks("tiny", 0)
    schedule = NoiseSchedule.from_config(PRESETS["tiny"]["scheduler"])
    z0, ids = torch.randn(2, 4, 8, 8), torch.zeros(2, 77, dtype=torch.long)

    def loss(weight) -> float:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return float(diffusion_loss(text_encoder, unet, schedule, z0, ids, generator, weight))

    plain = loss(1.0)
    assert loss(torch.ones(2, 1, 8, 8)) == pytest.approx(plain)
    assert loss(torch.full((2, 1, 8, 8), 3.0)) == pytest.approx(3 * plain)
    only_first = torch.zeros(2, 1, 8, 8)
    only_first[0] = 2.0  # the second sample's errors no longer count
    assert 0 < loss(only_first) != pytest.approx(plain)


def test_frozen_text_encoder_keeps_its_scaled_init_while_the_unet_trains(run: Path, tmp_path: Path) -> None:
    from scott.recipe.teacher import build_teacher_networks

    cfg = tiny_config(text_lr_scale=0.0, token_embedding_scale=10.0)
    for stage in ("vae", "latents"):
        shutil.copytree(run / stage, tmp_path / stage)
    assert run_teacher_stage(tmp_path, cfg, load_tokenizer(write_clip_tokenizer(tmp_path / "tokenizer")))
    saved = load_model(teacher_dir(tmp_path))
    init_text, init_unet = build_teacher_networks("tiny", cfg.seed, token_embedding_scale=10.0)
    unscaled, _ = build_teacher_networks("tiny", cfg.seed)
    embeddings = init_text.get_input_embeddings().weight
    torch.testing.assert_close(embeddings, 10 * unscaled.get_input_embeddings().weight)
    for name, value in init_text.state_dict().items():  # frozen: exactly the init, in fp16
        torch.testing.assert_close(saved.text_encoder.state_dict()[name], value.half().float(), msg=name)
    assert not torch.equal(saved.unet.state_dict()["conv_in.weight"], init_unet.conv_in.weight.half().float())


def test_adopted_vae_feeds_the_teacher_without_training(run: Path, tmp_path: Path) -> None:
    """--vae: the vae stage takes a trained folder (here the fixture run's, saved in fp16 as the shipped model is)."""
    shipped = tmp_path / "shipped-vae"
    trained = load_model(teacher_dir(run)).vae  # the run's VAE as exported: fp16 weights, loaded as float32
    trained.half().save_pretrained(str(shipped), safe_serialization=True)
    out = tmp_path / "adopted"
    run_recipe(out, tiny_config(), until="teacher", vae=shipped)
    state = json.loads((out / "vae" / "state.json").read_text())
    assert state["complete"] and not (out / "vae" / "log.jsonl").exists()  # no VAE training step ran
    assert state["scaling_factor"] == pytest.approx(trained.config.scaling_factor)
    assert {"psnr", "recon_accuracy_all"} <= set(state["metrics"])  # scored like a trained one
    adopted = load_file(str(vae_dir(out) / "diffusion_pytorch_model.safetensors"))
    assert all(t.dtype == torch.float32 for t in adopted.values())  # trained on as float32, not fp16
    source = trained.float().state_dict()
    assert all(torch.equal(adopted[k], source[k]) for k in source)
    assert load_model(teacher_dir(out)).vae.config.scaling_factor == pytest.approx(state["scaling_factor"])
    with pytest.raises(ValueError, match="another \\[vae\\] config"):
        run_recipe(out, tiny_config(), until="teacher")  # the same run without --vae would train over it


def test_equivariance_term_adds_the_downscaled_reconstruction_loss() -> None:
    from scott.data.dataset import make_batch
    from scott.recipe.vae import _pixel_losses, build_vae, downscale, vae_loss

    images = make_batch("train", 0, 2).images
    vae = build_vae("tiny", 0, {"norm_num_groups": 8})
    cfg = tiny_config()
    base, logs = vae_loss(vae, images, torch.Generator().manual_seed(1), cfg)
    assert "eq_l1" not in logs
    cfg.vae.equivariance_weight = 2.0
    with_eq, logs = vae_loss(vae, images, torch.Generator().manual_seed(1), cfg)
    # The same posterior sample, so the difference is exactly the weighted term on 32x32 decodes of 8x8 latents.
    z = vae.encode(images).latent_dist.sample(generator=torch.Generator().manual_seed(1))
    small = vae.decode(downscale(z, 0.5)).sample
    assert small.shape[-2:] == (images.shape[-2] // 2, images.shape[-1] // 2)
    l1, l2 = _pixel_losses(small, downscale(images, 0.5), cfg.vae.foreground_weight)
    assert logs["eq_l1"] == pytest.approx(l1.item(), rel=1e-5)
    assert (with_eq - base).item() == pytest.approx(2.0 * (l1 + cfg.vae.l2_weight * l2).item(), rel=1e-4)
    flat = torch.full((1, 3, 64, 64), 0.25)
    assert torch.allclose(downscale(flat, 0.5), torch.full((1, 3, 32, 32), 0.25))
