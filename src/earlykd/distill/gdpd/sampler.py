"""Deterministic DDIM (eta = 0) reverse chain; gradients flow through every step."""
from __future__ import annotations

import math

import torch

from .prior import DiffusionPrior


def ddim_timesteps(start: int, steps: int) -> list[int]:
    """`steps` timesteps evenly spaced from `start` down to 0 (400, 300, 200, 100, 0 by default)."""
    if steps <= 0:
        return []
    if steps == 1:
        return [int(start)]
    return [round(start - i * start / (steps - 1)) for i in range(steps)]


def ddim_step(prior: DiffusionPrior, x: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """x_t -> x_{t_prev}; t_prev < 0 means alpha_bar = 1, i.e. the clean x0 prediction (no clipping).

    x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t) and x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps,
    folded into x_prev = c_x x + c_eps eps with scalar coefficients."""
    alpha_bar = prior.schedule.alpha_bar_values
    ab_t, ab_prev = alpha_bar[t], (alpha_bar[t_prev] if t_prev >= 0 else 1.0)
    eps = prior(x, int(t))
    c_x = math.sqrt(ab_prev / ab_t)
    c_eps = math.sqrt(1 - ab_prev) - math.sqrt(ab_prev * (1 - ab_t) / ab_t)
    return torch.add(x * c_x, eps, alpha=c_eps)


def ddim_sample(prior: DiffusionPrior, x: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Run the chain over a decreasing grid; the step after the last grid entry goes to alpha_bar = 1."""
    for i, t in enumerate(timesteps):
        x = ddim_step(prior, x, t, timesteps[i + 1] if i + 1 < len(timesteps) else -1)
    return x


def ddim_chain(prior: DiffusionPrior, x: torch.Tensor, start: int = 400, steps: int = 5) -> torch.Tensor:
    """Treat x as the noisy latent at t = start and denoise in `steps` steps (0 steps: x unchanged)."""
    return ddim_sample(prior, x, ddim_timesteps(start, steps))

