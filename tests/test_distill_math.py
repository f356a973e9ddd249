"""SCott trainer pieces against references: the DDIM-eta solver vs diffusers' DDIMScheduler, the student's
equality with the teacher at init, the clean boundary of the target, LoRA/discriminator init, configs."""

from __future__ import annotations

import pytest
import torch
from diffusers import LCMScheduler, UNet2DConditionModel

from scott.distill.config import DistillConfig, load_config
from scott.distill.discriminator import UNetEncoderDiscriminator
from scott.distill.export import distill_schedule, student_scheduler_config
from scott.distill.lora import LoRALinear, inject_lora
from scott.distill.losses import consistency_distance, hinge_d_loss, hinge_g_loss, pseudo_huber
from scott.distill.student import build_student, consistency_fn, guidance_condition, target_fn
from scott.models import PRESETS, build_model
from scott.schedule import NoiseSchedule
from scott.train.ema import ema_update, make_ema


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny", seed=0)


ZERO_SNR_V = dict(PRESETS["tiny"]["scheduler"])  # v-prediction, zero terminal SNR
SD15_EPS = dict(PRESETS["sd15"]["scheduler"])  # epsilon, scaled_linear


def test_student_starts_equal_to_teacher_for_any_guidance(tiny):
    teacher = tiny.unet
    student = build_student(teacher, guidance_embed_dim=256)
    assert student.config.time_cond_proj_dim == teacher.config.time_cond_proj_dim  # kept when present
    z, t, text = torch.randn(2, 4, 8, 8), torch.tensor([999, 259]), torch.randn(2, 77, 128)
    with torch.no_grad():
        ref = teacher(z, t, encoder_hidden_states=text).sample
        for w in (1.0, 8.0):
            cond = guidance_condition(student, torch.full((2,), w))
            torch.testing.assert_close(student(z, t, encoder_hidden_states=text, timestep_cond=cond).sample, ref)


def test_student_gets_a_zero_initialised_guidance_projection_when_teacher_has_none():
    config = {**PRESETS["tiny"]["unet"], "time_cond_proj_dim": None}
    torch.manual_seed(0)
    teacher = UNet2DConditionModel.from_config(config).eval()
    student = build_student(teacher, guidance_embed_dim=32)
    assert student.config.time_cond_proj_dim == 32
    assert float(student.time_embedding.cond_proj.weight.detach().abs().sum()) == 0.0
    z, t, text = torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 77, 128)
    with torch.no_grad():
        cond = guidance_condition(student, torch.tensor([6.0]))
        out = student(z, t, encoder_hidden_states=text, timestep_cond=cond).sample
        torch.testing.assert_close(out, teacher(z, t, encoder_hidden_states=text).sample)
    assert student.time_embedding.cond_proj.weight.requires_grad


def test_target_is_the_clean_sample_below_zero_and_the_consistency_function_above(tiny):
    schedule = NoiseSchedule.from_config(ZERO_SNR_V)
    student = build_student(tiny.unet, 64)
    ema = make_ema(student)
    z, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 128)
    t = torch.tensor([-1, 259])
    cond = guidance_condition(ema, torch.tensor([4.0, 4.0]))
    with torch.no_grad():
        target = target_fn(ema, schedule, z, t, text, cond)
        f = consistency_fn(ema, schedule, z, t.clamp(min=0), text, cond)
    torch.testing.assert_close(target[0], z[0])
    torch.testing.assert_close(target[1], f[1])


def test_ema_update_moves_by_one_minus_decay(tiny):
    student = build_student(tiny.unet, 64)
    ema = make_ema(student)
    before = ema.conv_in.weight.detach().clone()
    with torch.no_grad():
        student.conv_in.weight.add_(1.0)
    ema_update(ema, student, decay=0.95)
    torch.testing.assert_close(ema.conv_in.weight, before + 0.05)


def test_distances_and_hinge_losses():
    a, b = torch.zeros(4), torch.full((4,), 3.0)
    assert float(pseudo_huber(a, b, 0.001)) == pytest.approx(3.0, abs=2e-3)  # L1-like far away
    assert float(pseudo_huber(a, a + 1e-5, 0.001)) == pytest.approx(0.5 * 1e-10 / 1e-3, rel=1e-2)  # L2-like
    assert float(consistency_distance(a, b, "l2", 0.0)) == pytest.approx(9.0)
    assert float(hinge_d_loss(torch.tensor([2.0]), torch.tensor([-2.0]))) == 0.0  # confident and right: no loss
    assert float(hinge_d_loss(torch.tensor([0.0]), torch.tensor([0.0]))) == 2.0
    assert float(hinge_g_loss(torch.tensor([1.5]))) == -1.5


def test_lora_starts_as_identity_and_trains_only_low_rank():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    x = torch.randn(3, 16)
    ref = base(x)
    lora = LoRALinear(base, rank=2)
    torch.testing.assert_close(lora(x), ref)
    assert {n for n, p in lora.named_parameters() if p.requires_grad} == {"lora_a", "lora_b"}
    seq = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert inject_lora(seq, 2, targets=("0",)) == 1 and isinstance(seq[0], LoRALinear)


def test_discriminator_trains_lora_and_heads_only(tiny):
    disc = UNetEncoderDiscriminator(tiny.unet, lora_rank=4, head_channels=32)
    trained, total = disc.trainable_share()
    names = {n.split(".")[-1] for n, p in disc.named_parameters() if p.requires_grad}
    assert names <= {"lora_a", "lora_b", "weight", "bias"}
    assert all(("lora_" in n) or n.startswith("heads.") for n, p in disc.named_parameters() if p.requires_grad)
    assert disc.num_lora > 0 and 0 < trained / total < 0.25
    z, text = torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 77, 128)
    logits = disc(z, torch.tensor([19, 999]), text)
    assert logits.shape == (2,)
    logits.sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0  # the generator gets a gradient through D
    assert all(p.grad is None for p in disc.parameters() if not p.requires_grad)
    assert tiny.unet.conv_in.weight.grad is None  # the teacher itself is untouched


def test_exported_scheduler_keeps_the_teacher_schedule():
    config = DistillConfig(num_grid_steps=50)
    exported = student_scheduler_config(ZERO_SNR_V, config)
    torch.testing.assert_close(
        NoiseSchedule.from_config(exported).alphas_cumprod, NoiseSchedule.from_config(ZERO_SNR_V).alphas_cumprod
    )
    assert float(distill_schedule(ZERO_SNR_V, config).alphas_cumprod[-1]) == 0.0
    lcm = LCMScheduler.from_config(exported)
    lcm.set_timesteps(4)
    assert lcm.timesteps.tolist() == distill_schedule(ZERO_SNR_V, config).inference_timesteps(4).tolist()
    assert lcm.config.prediction_type == "v_prediction" and lcm.config.rescale_betas_zero_snr


def test_config_files_flags_and_validation(tmp_path):
    (tmp_path / "a.toml").write_text("eta = 0.0\nadv_weight = 0\nsteps = 7\nsubsteps = 2\n")
    cfg = load_config(tmp_path / "a.toml", steps=None, seed=3)
    assert (cfg.eta, cfg.adv_weight, cfg.steps, cfg.seed, cfg.substeps) == (0.0, 0, 7, 3, 2)
    (tmp_path / "bad.toml").write_text("etaa = 1\n")
    with pytest.raises(ValueError, match="unknown config fields"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "a.yaml").write_text("eta: 0.0\n")
    with pytest.raises(ValueError, match=r"must be \.toml"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ValueError, match="w_min"):
        DistillConfig(w_min=5, w_max=2)
    with pytest.raises(ValueError, match="substeps"):
        DistillConfig(skip=2, substeps=3)


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "distill"
    scales, methods = sorted(root.glob("*.toml")), sorted((root / "methods").glob("*.toml"))
    assert {f.stem for f in scales} >= {"tiny", "sd15"}
    assert {f.stem for f in methods} >= {"lcm", "cd", "adversarial", "scott"}
    for scale in scales:
        for method in methods:
            load_config([scale, method])


@pytest.mark.parametrize("addition_embed_type", [None, "text"], ids=["plain", "pooled-text"])
def test_discriminator_encoder_is_the_teachers_at_init(tiny, addition_embed_type):
    # With LoRA's B at zero, D's mid-block features must be the teacher's own: a teacher that adds pooled text to
    # its time embedding (addition_embed_type "text") would otherwise give D a different, weaker text condition.
    # Without the private keys: from_config resets every key "_use_default_values" lists, addition_embed_type too.
    config = {k: v for k, v in tiny.unet.config.items() if not k.startswith("_")}
    config.update(addition_embed_type=addition_embed_type, addition_embed_type_num_heads=4)
    torch.manual_seed(0)
    teacher = UNet2DConditionModel.from_config(config).eval()
    disc = UNetEncoderDiscriminator(teacher, lora_rank=4, head_channels=32).eval()
    z, t, text = torch.randn(2, 4, 8, 8), torch.tensor([19, 999]), torch.randn(2, 77, 128)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.mid_block.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(key, out))
        for key, m in (("teacher", teacher), ("disc", disc))
    ]
    with torch.no_grad():
        teacher(z, t, encoder_hidden_states=text)
        disc(z, t, text)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(seen["disc"], seen["teacher"])
    assert (disc.add_embedding is not None) == (addition_embed_type == "text")
