"""The generative prior of GDPD: teacher auto-encoder, epsilon-predicting denoiser, DDPM schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TeacherAutoencoder(nn.Module):
    """Linear encoder + batch norm to the latent width, linear decoder back to the teacher width."""

    def __init__(self, teacher_dim: int, latent_dim: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(teacher_dim, latent_dim), nn.BatchNorm1d(latent_dim))
        self.decoder = nn.Linear(latent_dim, teacher_dim)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (latent, reconstruction MSE)."""
        latent = self.encoder(feature)
        return latent, F.mse_loss(self.decoder(latent), feature)


class Bottleneck(nn.Module):
    """Residual bottleneck block on vectors, as the release's (on 1x1 maps its convolutions are linear):
    C -> C/r -> C/r -> C, each followed by batch norm (ReLU after the first two), plus x."""

    def __init__(self, width: int, reduction: int = 4):
        super().__init__()
        mid = max(1, width // reduction)
        self.body = nn.Sequential(
            nn.Linear(width, mid), nn.BatchNorm1d(mid), nn.ReLU(),
            nn.Linear(mid, mid), nn.BatchNorm1d(mid), nn.ReLU(),
            nn.Linear(mid, width), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Denoiser(nn.Module):
    """eps(x_t, t), as released: a learned timestep embedding added to the input, two residual bottleneck
    blocks, then a linear (1x1) projection and batch norm."""

    def __init__(self, width: int, timesteps: int = 1000):
        super().__init__()
        self.time = nn.Embedding(timesteps, width)
        self.blocks = nn.Sequential(Bottleneck(width), Bottleneck(width), nn.Linear(width, width),
                                    nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """t: one timestep per sample, or one int shared by the batch (the DDIM chain)."""
        return self.blocks(x + (self.time.weight[t] if isinstance(t, int) else self.time(t)))


class NoiseSchedule(nn.Module):
    """DDPM schedule: linear betas; alpha_bar[t] = prod_{s <= t} (1 - beta_s), t = 0 .. T-1."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alpha_bar = torch.cumprod(1 - betas, 0)
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        self.alpha_bar_values = alpha_bar.tolist()  # Python floats: chain coefficients cost no tensor ops

    @property
    def timesteps(self) -> int:
        return len(self.alpha_bar)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""
        ab = self.alpha_bar[t].unsqueeze(-1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


class DiffusionPrior(nn.Module):
    """Denoiser + schedule; `loss` is the DDPM noise-prediction loss with t uniform per sample.

    `denoiser` (any module eps(x, t)) defaults to the GDPD `Denoiser`; tests swap it."""

    def __init__(self, width: int, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 denoiser: nn.Module | None = None):
        super().__init__()
        self.schedule = NoiseSchedule(timesteps, beta_start, beta_end)
        self.denoiser = Denoiser(width, timesteps) if denoiser is None else denoiser

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if isinstance(t, int) and not isinstance(self.denoiser, Denoiser):  # other denoisers take a tensor
            t = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        return self.denoiser(x, t)

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        t = torch.randint(0, self.schedule.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        return F.mse_loss(self(self.schedule.add_noise(x0, noise, t), t), noise)
