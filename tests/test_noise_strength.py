"""The teacher solver's noise strength: the fresh-noise share of a link, measured against the sampler itself, and
eta read on SD-1.5's schedule so that it injects the same share on the embedded model's zero-terminal-SNR one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scott.distill.config import DistillConfig, load_config
from scott.distill.noise_strength import fresh_noise_share, reference_eta, reference_schedule
from scott.distill.trainer import link_eta_table
from scott.sampler import solve, substep_timesteps
from scott.schedule import NoiseSchedule

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = NoiseSchedule.from_config(
    json.loads((REPO / "models/scott-tiny/scheduler/scheduler_config.json").read_text())
)
SD15 = reference_schedule("sd15")


def _links(t_n: list[int], h: int, skip: int = 20) -> torch.Tensor:
    return substep_timesteps(torch.tensor(t_n), skip, h)


def test_top_link_share_on_both_schedules():
    # The numbers the issue computed: eta = 0.3, h = 3 is 19.4% fresh noise on the embedded teacher's top link and
    # 2.0% on SD-1.5's; h = 3 doubles it against h = 1 on the zero-SNR schedule (where one step from alpha_bar = 0
    # replaces eta^2 of the noise), not on SD-1.5.
    top3, top1 = _links([999], 3), _links([999], 1)
    assert float(fresh_noise_share(EMBEDDED, top3, 0.3)) == pytest.approx(0.194, abs=5e-4)
    assert float(fresh_noise_share(SD15, top3, 0.3)) == pytest.approx(0.0204, abs=5e-4)
    assert float(fresh_noise_share(EMBEDDED, top1, 0.3)) == pytest.approx(0.09, abs=5e-4)
    assert float(fresh_noise_share(SD15, top1, 0.3)) == pytest.approx(0.019, abs=5e-4)
    assert float(fresh_noise_share(EMBEDDED, top3, 0.0)) == 0.0


def test_share_matches_the_sampler_with_an_oracle_model():
    # Run the real DDIM-eta sub-steps on unit-variance data with a model that knows x0: two solves from the same
    # (x0, eps) that differ only in their fresh noise differ by sqrt(2) x the fresh part of z_hat.
    g = torch.Generator().manual_seed(0)
    links = _links([999, 499, 99], 3)
    batch = links.shape[0]
    x0 = torch.randn((batch, 4, 64, 64), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    eta = torch.tensor([0.3, 0.6, 0.45])

    def oracle(z, t):
        a = EMBEDDED.alpha_bar(t).reshape(-1, 1, 1, 1)
        return EMBEDDED.target_from(x0, (z - a.sqrt() * x0) / (1 - a).sqrt(), t)

    z_tn = EMBEDDED.add_noise(x0, eps, links[:, 0])
    runs = [
        solve(oracle, EMBEDDED, z_tn, links, eta, torch.randn((batch, 3, *x0.shape[1:]), generator=g)) for _ in "ab"
    ]
    measured = (runs[0] - runs[1]).flatten(1).var(dim=1) / 2 / runs[0].flatten(1).var(dim=1)
    expected = fresh_noise_share(EMBEDDED, links, eta).float()
    assert measured.tolist() == pytest.approx(expected.tolist(), rel=0.05)


def test_eta_read_on_sd15_injects_sd15s_share_on_every_link():
    grid = EMBEDDED.training_grid()
    for h in (1, 3):
        links = _links(grid.tolist(), h)
        on_sd15 = reference_eta(SD15, links, 0.3, SD15)
        assert on_sd15.tolist() == pytest.approx([0.3] * len(grid), abs=1e-9)  # the paper's eta, unchanged
        matched = reference_eta(EMBEDDED, links, 0.3, SD15)
        assert fresh_noise_share(EMBEDDED, links, matched).tolist() == pytest.approx(
            fresh_noise_share(SD15, links, 0.3).tolist(), abs=1e-9
        )
        assert float(matched[-1]) < 0.15  # the top link: far less than 0.3 on the zero-SNR schedule
    assert reference_eta(EMBEDDED, _links(grid.tolist(), 3), 0.3, None).tolist() == [0.3] * len(grid)


def test_the_trainer_reads_eta_per_link():
    config = DistillConfig(eta=0.3, substeps=3, skip=20)
    table = link_eta_table(config, EMBEDDED)
    assert table.shape == (1000,)
    assert float(table[999]) == pytest.approx(float(reference_eta(EMBEDDED, _links([999], 3), 0.3, SD15)[0]))
    raw = link_eta_table(DistillConfig(eta=0.3, eta_reference="none"), EMBEDDED)
    assert torch.all(raw == 0.3)
    with pytest.raises(ValueError, match="eta_reference"):
        DistillConfig(eta_reference="sd21")


def test_method_files_layer_over_a_scale_file():
    scale, methods = REPO / "configs/distill/tiny.toml", REPO / "configs/distill/methods"
    lcm = load_config([scale, methods / "lcm.toml"])
    assert (lcm.eta, lcm.substeps, lcm.adv_weight, lcm.lr) == (0.0, 1, 0.0, 1e-4)
    scott = load_config([scale, methods / "scott.toml"])
    assert (scott.eta, scott.eta_reference, scott.substeps, scott.adv_weight) == (0.3, "sd15", 3, 0.4)
    assert load_config(scale) == scott  # DistillConfig's defaults are SCott's
    cd, adversarial = (load_config([scale, methods / f"{m}.toml"]) for m in ("cd", "adversarial"))
    assert (cd.eta, cd.substeps, cd.adv_weight) == (0.0, 3, 0.0)
    assert (adversarial.eta, adversarial.substeps, adversarial.adv_weight) == (0.0, 1, 0.4)
    sd15 = load_config([REPO / "configs/distill/sd15.toml", methods / "lcm.toml"])
    assert (sd15.lr, sd15.substeps) == (8e-6, 1)
