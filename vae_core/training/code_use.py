"""A VQ-VAE's code use while it trains: counted every step, restarted where dead, folded into the model each epoch.

A code no encoder output picks gets no gradient, so left alone it stays dead. The loop counts each step's code use
(``StepResult.code_counts``); codes unused over the last RESTART_WINDOW steps are moved onto encoder outputs of
the current batch, and at each epoch's end the counts become the model's sampling frequencies (``code_usage``).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..models import VAEBase
from ..models.vq import VQVAE, codebook_perplexity
from .objectives import StepResult

RESTART_WINDOW = 10     # steps: a VQ-VAE code unused over this many batches is dead and is restarted


class CodeUse:
    """A codebook model's code use over an epoch: it sets the model's sampling frequencies at the epoch's end,
    and codes unused over the last RESTART_WINDOW steps are restarted as they go."""

    def __init__(self, restart: bool):
        self.restart, self.counts, self.window, self.restarted = restart, None, None, 0

    def add(self, step: int, model: VAEBase, result: StepResult, gen: torch.Generator, world: int) -> None:
        """Count one step's code use (nothing for a model without a codebook)."""
        counts = result.code_counts
        if counts is None:
            return
        self.counts = counts if self.counts is None else self.counts + counts
        self.window = counts if self.window is None else self.window + counts
        if self.restart and step % RESTART_WINDOW == 0:
            self.restarted += restart_dead_codes(model.as_codebook(), self.window, result.encodings, gen, world)
            self.window = None

    def summary(self, model: VAEBase, world: int) -> dict:
        """The epoch's code use into the model's sampling frequencies; its usage and perplexity for the event."""
        if self.counts is None:
            return {}
        if world > 1:
            dist.all_reduce(self.counts)
        model.as_codebook().code_usage.copy_(self.counts / self.counts.sum())
        return {"codebook_usage": float((self.counts > 0).float().mean()),
                "perplexity": float(codebook_perplexity(self.counts)),
                **({"dead_codes_restarted": float(self.restarted)} if self.restart else {})}


def restart_dead_codes(model: VQVAE, window: torch.Tensor, z_e: torch.Tensor, gen: torch.Generator,
                       world: int) -> int:
    """Restart the VQ-VAE's codes unused over the last RESTART_WINDOW steps (``window``: their counts) at
    encoder outputs of the current batch (``z_e``), as Jukebox does (Dhariwal et al., 2020). Checked every
    few steps rather than once an epoch: a code restarted once an epoch is often dead again by the next.
    Under DDP the counts are summed over ranks and rank 0's codebook is broadcast, so ranks agree."""
    if world > 1:
        dist.all_reduce(window)
    n = model.restart_dead_codes(window, z_e, gen)
    if world > 1:
        dist.broadcast(model.codebook.weight.data, 0)
    return n
