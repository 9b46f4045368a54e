"""Deterministic DDIM (eta = 0) reverse chain; gradients flow through every step."""
from __future__ import annotations

import math

import torch

from .folded_chain import folded_chain
from .prior import Denoiser, DiffusionPrior, NoiseSchedule, frozen_program, run_program


def ddim_timesteps(start: int, steps: int) -> list[int]:
    """`steps` timesteps evenly spaced from `start` down to 0 (400, 300, 200, 100, 0 by default)."""
    if steps <= 0:
        return []
    if steps == 1:
        return [int(start)]
    return [round(start - i * start / (steps - 1)) for i in range(steps)]


def ddim_coefficients(alpha_bar: list[float], t: int, t_prev: int) -> tuple[float, float]:
    """(c_x, c_eps) of x_prev = c_x x + c_eps eps; t_prev < 0 means alpha_bar = 1 (the clean x0 prediction).

    x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t) and x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps."""
    ab_t, ab_prev = alpha_bar[t], (alpha_bar[t_prev] if t_prev >= 0 else 1.0)
    c_x = math.sqrt(ab_prev / ab_t)
    c_eps = math.sqrt(1 - ab_prev) - math.sqrt(ab_prev * (1 - ab_t) / ab_t)
    return c_x, c_eps


def ddim_plan(schedule: NoiseSchedule, timesteps: list[int]) -> list[tuple[float, float]]:
    """The coefficients of every step of a grid (the last step goes to alpha_bar = 1), computed once."""
    key = tuple(int(t) for t in timesteps)
    plan = schedule.plans.get(key)
    if plan is None:
        ends = key[1:] + (-1,)
        plan = schedule.plans[key] = [ddim_coefficients(schedule.alpha_bar_values, t, e) for t, e in zip(key, ends)]
    return plan


def ddim_step(prior: DiffusionPrior, x: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """x_t -> x_{t_prev}; t_prev < 0 means alpha_bar = 1, i.e. the clean x0 prediction (no clipping)."""
    c_x, c_eps = ddim_coefficients(prior.schedule.alpha_bar_values, t, t_prev)
    eps = prior(x, int(t))
    return torch.add(x * c_x, eps, alpha=c_eps)


def ddim_sample(prior: DiffusionPrior, x: torch.Tensor, timesteps: list[int],
                running_stats: bool = False) -> torch.Tensor:
    """Run the chain over a decreasing grid; the step after the last grid entry goes to alpha_bar = 1.

    running_stats: the GDPD denoiser's batch norms use their running statistics in either mode, through
    `folded_chain` (other denoisers run as they are)."""
    plan = ddim_plan(prior.schedule, timesteps)
    if isinstance(prior.denoiser, Denoiser):
        denoiser = prior.denoiser
        rows = denoiser.rows(timesteps)
        hint = folded_chain(denoiser, x, rows, plan) if running_stats and plan else None
        if hint is not None:
            return hint
        program = frozen_program(denoiser.blocks) if running_stats else None
        for (c_x, c_eps), row in zip(plan, rows.unbind(0)):
            eps = run_program(program, x + row) if program is not None else denoiser.blocks(x + row)
            x = torch.add(x * c_x, eps, alpha=c_eps)
        return x
    for (c_x, c_eps), t in zip(plan, timesteps):
        eps = prior(x, int(t))
        x = torch.add(x * c_x, eps, alpha=c_eps)
    return x


def ddim_chain(prior: DiffusionPrior, x: torch.Tensor, start: int = 400, steps: int = 5,
               running_stats: bool = False) -> torch.Tensor:
    """Treat x as the noisy latent at t = start and denoise in `steps` steps (0 steps: x unchanged)."""
    return ddim_sample(prior, x, ddim_timesteps(start, steps), running_stats)
