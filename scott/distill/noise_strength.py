"""The teacher solver's noise strength, defined so that it means the same on every noise schedule.

SCott's teacher takes h DDIM-eta sub-steps over each link t_n -> t_m. How much of the target latent z_hat_{t_m} is
fresh noise depends on the schedule, not only on eta: at a zero-terminal-SNR t = 999 (alpha_bar = 0) one sub-step
replaces eta^2 of the variance with fresh noise, where SD-1.5's schedule (alpha_bar(999) = 0.0047) replaces a few
per mille. So eta = 0.3 is 19% fresh noise on the embedded teacher's top link and 2% on SD-1.5's (h = 3).

fresh_noise_share measures it. For unit-variance data and a model that predicts (x0, eps) exactly, the noise part of
z_s after one sub-step t -> s is sqrt(1 - a_s - sigma^2) eps + sigma xi: a share r = sigma^2 / (1 - a_s)
= eta^2 (1 - a_t / a_s) / (1 - a_t) of it is fresh. Noise carried on keeps its share through later sub-steps, so
after h of them the fresh share of z_hat_{t_m} is (1 - a_m) (1 - prod_j (1 - r_j)).

reference_eta turns the paper's eta into a per-link eta on another schedule: the one whose share on each link equals
what eta gives on the same timesteps of the reference schedule (SD-1.5's, the paper's teacher). On SD-1.5 itself it
is eta, unchanged; so is the last link's, which ends clean (no fresh noise survives into x0 on any schedule).
"""

from __future__ import annotations

from typing import Literal

import torch

from scott.schedule import NoiseSchedule

EtaReference = Literal["sd15", "none"]
ETA_REFERENCES: tuple[str, ...] = ("sd15", "none")

# SD-1.5's scheduler (the paper's teacher): 1000 scaled-linear betas, no zero-SNR rescale.
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}


def reference_schedule(name: EtaReference) -> NoiseSchedule | None:
    """The schedule eta is read on: SD-1.5's for 'sd15', None ('none': eta applies as is on every schedule)."""
    if name == "sd15":
        return NoiseSchedule.from_config(SD15_SCHEDULER)
    if name == "none":
        return None
    raise ValueError(f"eta_reference must be one of {ETA_REFERENCES}, got {name!r}")


def _kept_per_substep(schedule: NoiseSchedule, timesteps: torch.Tensor) -> torch.Tensor:
    """q_j = (1 - a_t / a_s) / (1 - a_t) per sub-step (B, h), float64: the fresh share of the noise is eta^2 q_j."""
    a = schedule.alpha_bar(timesteps).to(torch.float64)
    a_t, a_s = a[:, :-1], a[:, 1:]
    moving = timesteps[:, 1:] < timesteps[:, :-1]
    q = (1.0 - a_t / a_s) / (1.0 - a_t)
    return torch.where(moving, q.clamp(0.0, 1.0), torch.zeros_like(q))


def fresh_noise_share(schedule: NoiseSchedule, timesteps: torch.Tensor, eta: float | torch.Tensor) -> torch.Tensor:
    """(B,) share of z_hat's variance that the DDIM-eta sub-steps along timesteps (B, h + 1) inject as fresh noise."""
    eta2 = torch.as_tensor(eta, dtype=torch.float64).reshape(-1, 1) ** 2
    carried = (1.0 - eta2 * _kept_per_substep(schedule, timesteps)).prod(dim=1)
    a_m = schedule.alpha_bar(timesteps[:, -1]).to(torch.float64)
    return (1.0 - a_m) * (1.0 - carried)


def matched_eta(
    schedule: NoiseSchedule, timesteps: torch.Tensor, share: torch.Tensor, iterations: int = 60
) -> torch.Tensor:
    """(B,) eta in [0, 1] whose fresh-noise share along timesteps (B, h + 1) is `share` (bisection: the share rises
    with eta; a share above eta = 1's, the DDPM step, gets 1)."""
    lo = torch.zeros(timesteps.shape[0], dtype=torch.float64)
    hi = torch.ones_like(lo)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = fresh_noise_share(schedule, timesteps, mid) < share
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def reference_eta(
    schedule: NoiseSchedule, timesteps: torch.Tensor, eta: float, reference: NoiseSchedule | None
) -> torch.Tensor:
    """(B,) per-link eta on `schedule` that injects the fresh-noise share eta injects on `reference` (None: eta)."""
    same = torch.full((timesteps.shape[0],), float(eta), dtype=torch.float64)
    if reference is None or eta == 0:
        return same
    share = fresh_noise_share(reference, timesteps, eta)
    # A link that ends clean (t_m = -1) keeps no fresh noise on any schedule: its eta has no schedule to adapt to.
    return torch.where(share > 0, matched_eta(schedule, timesteps, share), same)
