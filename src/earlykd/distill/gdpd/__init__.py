"""GDPD: prior (auto-encoder, denoiser, DDPM schedule), DDIM sampler, and the registered distiller."""
from .distiller import GDPD, NoiseAdapter
from .prior import Bottleneck, Denoiser, DiffusionPrior, NoiseSchedule, TeacherAutoencoder
from .sampler import ddim_chain, ddim_coefficients, ddim_plan, ddim_sample, ddim_step, ddim_timesteps

__all__ = ["GDPD", "NoiseAdapter", "Bottleneck", "Denoiser", "DiffusionPrior", "NoiseSchedule",
           "TeacherAutoencoder", "ddim_chain", "ddim_coefficients", "ddim_plan", "ddim_sample", "ddim_step",
           "ddim_timesteps"]
