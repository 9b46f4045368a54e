"""The DDIM chain through GDPD's denoiser with its batch norms on running statistics, as one autograd
function: each batch norm is folded into the linear layer before it, the chain runs without recording a
graph, and the backward is written out, with each layer's weight gradient taken over all steps in one
matrix product. Same function as the module chain up to float rounding (a test holds them within 1e-12
in double precision); at batch 16 it costs about half of the recorded chain.

The denoiser's body is 7 (linear, batch norm) layers: two residual blocks of three (ReLU after the first
two), then one more. Layer i reads ins[i] and writes the pre-activation whose gradient is grads[i]."""
from __future__ import annotations

import torch
from torch import nn

from .prior import Bottleneck, Denoiser


def folded_layers(denoiser: Denoiser) -> list[tuple[nn.Linear, nn.BatchNorm1d]] | None:
    """The 7 (linear, batch norm) pairs of a standard GDPD denoiser, or None for any other layout."""
    blocks = list(denoiser.blocks)
    if len(blocks) != 4 or not all(type(b) is Bottleneck for b in blocks[:2]):
        return None
    layers = [layer for block in blocks[:2] for layer in block.body] + blocks[2:]
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    if [type(m) for m in layers] != block * 2 + [nn.Linear, nn.BatchNorm1d]:
        return None
    pairs = [(a, b) for a, b in zip(layers, layers[1:]) if type(a) is nn.Linear]
    if any(not bn.affine or bn.num_batches_tracked is None or lin.bias is None for lin, bn in pairs):
        return None
    return pairs


def folded_chain(denoiser: Denoiser, x: torch.Tensor, rows: torch.Tensor,
                 plan: list[tuple[float, float]]) -> torch.Tensor | None:
    """x after the chain, step k being x <- c_x x + c_eps * body(x + rows[k]) with (c_x, c_eps) = plan[k];
    None when the denoiser is not of the standard layout."""
    pairs = folded_layers(denoiser)
    if pairs is None:
        return None
    norms = [bn for _, bn in pairs]
    params = ([lin.weight for lin, _ in pairs] + [lin.bias for lin, _ in pairs]
              + [bn.weight for bn in norms] + [bn.bias for bn in norms])
    return _Chain.apply(tuple(plan), running_statistics(denoiser, norms), x, rows, *params)


def running_statistics(denoiser: Denoiser, norms: list[nn.BatchNorm1d]) -> tuple[torch.Tensor, torch.Tensor]:
    """(running means, 1 / sqrt(running var + eps)) of all the layers, concatenated. Kept on the denoiser
    until a statistic changes (never in stage 2, where the denoiser runs only here) or is replaced. The
    batch-norm kernel updates running statistics without counting a version, so a train-mode pass is seen
    by the counter it does advance, num_batches_tracked."""
    buffers = [t for bn in norms for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    key = [t._version for t in buffers] + [bn.eps for bn in norms]
    cached = denoiser.__dict__.get("_folded_statistics")
    if cached is None or cached[1] != key or any(a is not b for a, b in zip(cached[0], buffers)):
        with torch.no_grad():
            mean = torch.cat([bn.running_mean for bn in norms])
            inv_std = torch.cat([(bn.running_var + bn.eps).rsqrt() for bn in norms])
        cached = denoiser.__dict__["_folded_statistics"] = (buffers, key, mean, inv_std)
    return cached[2], cached[3]


class _Chain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, statistics, x, rows, *params):
        mean, inv_std = statistics
        ws, bs, gammas, betas = (params[i:i + 7] for i in range(0, 28, 7))
        sizes = [len(b) for b in bs]
        scale = torch.cat(gammas) * inv_std
        shift = torch.cat(bs) - mean
        scales = scale.split(sizes)
        weights = [w * s.unsqueeze(1) for w, s in zip(ws, scales)]
        b0, b1, b2, b3, b4, b5, b6 = torch.addcmul(torch.cat(betas), shift, scale).split(sizes)
        w0, w1, w2, w3, w4, w5, w6 = (w.t() for w in weights)
        steps, batch = len(plan), len(x)
        ins = [x.new_empty(steps, batch, w.shape[1]) for w in weights]
        for (c_x, c_eps), row, h0, a1, a2, h1, a4, a5, h2 in zip(plan, rows, *(t.unbind(0) for t in ins)):
            torch.add(x, row, out=h0)
            torch.addmm(b0, h0, w0, out=a1).relu_()
            torch.addmm(b1, a1, w1, out=a2).relu_()
            torch.addmm(b2, a2, w2, out=h1).add_(h0)
            torch.addmm(b3, h1, w3, out=a4).relu_()
            torch.addmm(b4, a4, w4, out=a5).relu_()
            torch.addmm(b5, a5, w5, out=h2).add_(h1)
            x = torch.add(x * c_x, torch.addmm(b6, h2, w6), alpha=c_eps)
        ctx.plan, ctx.ins, ctx.weights, ctx.sizes = plan, ins, weights, sizes
        ctx.folding = (scale, scales, shift, inv_std)
        ctx.save_for_backward(*ws)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        plan, ins, weights = ctx.plan, ctx.ins, ctx.weights
        steps, batch = len(plan), len(g)
        grads = [g.new_empty(steps, batch, w.shape[0]) for w in weights]
        starts = g.new_empty(steps, batch, g.shape[1])   # the gradient of each step's x + row
        w0, w1, w2, w3, w4, w5, w6 = weights
        off = [ins[i].le(0).unbind(0) for i in (1, 2, 4, 5)]   # where each ReLU stopped its input
        per_step = zip(plan, starts.unbind(0), *(t.unbind(0) for t in grads), *off)
        for (c_x, c_eps), h0, d0, d1, d2, d3, d4, d5, d6, off1, off2, off4, off5 in reversed(list(per_step)):
            torch.mul(g, c_eps, out=d6)
            torch.mm(d6, w6, out=d5)                    # d5 is also the gradient of h2 (the residual)
            torch.mm(d5, w5, out=d4).masked_fill_(off5, 0)
            torch.mm(d4, w4, out=d3).masked_fill_(off4, 0)
            torch.addmm(d5, d3, w3, out=d2)             # the gradient of h1
            torch.mm(d2, w2, out=d1).masked_fill_(off2, 0)
            torch.mm(d1, w1, out=d0).masked_fill_(off1, 0)
            torch.addmm(d2, d0, w0, out=h0)
            g = torch.add(h0, g, alpha=c_x)
        needs = ctx.needs_input_grad
        out = [g if needs[2] else None, starts.sum(1) if needs[3] else None]
        if not any(needs[4:]):
            return (None, None, *out, *[None] * 28)
        scale, scales, shift, inv_std = ctx.folding
        grad_shift = g.new_empty(len(scale))      # the folded biases' gradient
        grad_scale = g.new_empty(len(scale))
        by_layer = zip(ctx.saved_tensors, grads, ins, scales, grad_shift.split(ctx.sizes), grad_scale.split(ctx.sizes))
        grad_ws = []
        for w, d, a, s, gb, gs in by_layer:
            d = d.view(-1, d.shape[2])
            grad_w = d.t().mm(a.view(-1, a.shape[2]))     # the folded weight's gradient, over all steps
            torch.sum(d, 0, out=gb)
            torch.linalg.vecdot(grad_w, w, out=gs)
            grad_ws.append(grad_w.mul_(s.unsqueeze(1)))
        grad_scale.addcmul_(grad_shift, shift)
        grad_b, grad_gamma = (grad_shift * scale).split(ctx.sizes), grad_scale.mul_(inv_std).split(ctx.sizes)
        return (None, None, *out, *grad_ws, *grad_b, *grad_gamma, *grad_shift.split(ctx.sizes))
