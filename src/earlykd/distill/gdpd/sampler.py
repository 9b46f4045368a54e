"""Deterministic DDIM (eta = 0) reverse chain; gradients flow through every step."""
from __future__ import annotations

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
    """x_t -> x_{t_prev}; t_prev < 0 means alpha_bar = 1, i.e. the clean x0 prediction (no clipping)."""
    alpha_bar = prior.schedule.alpha_bar
    ab_t = alpha_bar[t]
    ab_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(ab_t)
    eps = prior(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
    x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


def ddim_sample(prior: DiffusionPrior, x: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Run the chain over a decreasing grid; the step after the last grid entry goes to alpha_bar = 1."""
    for i, t in enumerate(timesteps):
        x = ddim_step(prior, x, t, timesteps[i + 1] if i + 1 < len(timesteps) else -1)
    return x


def ddim_chain(prior: DiffusionPrior, x: torch.Tensor, start: int = 400, steps: int = 5) -> torch.Tensor:
    """Treat x as the noisy latent at t = start and denoise in `steps` steps (0 steps: x unchanged)."""
    return ddim_sample(prior, x, ddim_timesteps(start, steps))

