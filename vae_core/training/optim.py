"""Adam on torch's fused kernel, without torch.optim's machinery.

``torch.optim.Optimizer`` wraps its methods (``add_param_group``, ``zero_grad``, ``step``,
``state_dict``) in helpers that import ``torch._dynamo`` on their first call: about 830 modules
and 0.85 s on a 2-core CPU, a third of a short command-line run, for a compiler this loop never
uses. ``FusedAdam`` calls the same kernel (``torch._fused_adam_``, on CPU and CUDA) with the same
state and the same update, step for step bit-identical to ``torch.optim.Adam(fused=True)``
(tests/test_train.py checks it), and its ``state_dict`` has torch's layout, so run folders
written before or after read alike. On other devices (MPS) ``make_optimizer``
keeps ``torch.optim.Adam``.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ..config import TrainConfig
from ..errors import VAEError

FUSED_DEVICES = ("cpu", "cuda")


class FusedAdam:
    """Adam (Kingma & Ba, 2015) with L2 weight decay, as torch.optim.Adam(fused=True) computes it."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = list(params)
        if not self.params:
            raise VAEError("The optimizer was given no parameters to train.")
        bad = sorted({p.device.type for p in self.params} - set(FUSED_DEVICES))
        if bad:
            raise VAEError(f"The fused Adam kernel runs on {' and '.join(FUSED_DEVICES)}, not {bad[0]}.")
        # torch's own layout and names, so that state_dict() reads like torch.optim.Adam's.
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "differentiable": False, "fused": True, "decoupled_weight_decay": False,
                              "params": list(range(len(self.params)))}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _state(self, i: int, p: torch.Tensor) -> dict[str, torch.Tensor]:
        st = self.state.get(i)
        if st is None:
            st = self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                  "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                  "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return st

    @torch.no_grad()
    def step(self) -> None:
        g = self.param_groups[0]
        by_device: dict[tuple, tuple[list, ...]] = {}
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            st = self._state(i, p)
            lists = by_device.setdefault((p.device, p.dtype), ([], [], [], [], []))
            for lst, t in zip(lists, (p, p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"])):
                lst.append(t)
        beta1, beta2 = g["betas"]
        for params, grads, exp_avgs, exp_avg_sqs, steps in by_device.values():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=g["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"], eps=g["eps"],
                               maximize=False, grad_scale=None, found_inf=None)

    def state_dict(self) -> dict:
        return {"state": {i: dict(st) for i, st in self.state.items()},
                "param_groups": [dict(self.param_groups[0])]}

    def load_state_dict(self, sd: dict) -> None:
        """Load a state written by this class or by torch.optim.Adam, checking that it fits these parameters."""
        groups = sd.get("param_groups") or []
        if len(groups) != 1 or len(groups[0].get("params", ())) != len(self.params):
            raise VAEError("The saved optimizer state does not fit this model's parameters; start a new run folder.")
        saved = groups[0]
        if saved.get("amsgrad") or saved.get("maximize") or saved.get("decoupled_weight_decay"):
            raise VAEError("The saved optimizer state is not plain Adam (amsgrad, maximize or AdamW); "
                           "start a new run folder.")
        for k in ("lr", "eps", "weight_decay"):
            self.param_groups[0][k] = saved[k]
        self.param_groups[0]["betas"] = tuple(saved["betas"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for i, st in sd.get("state", {}).items():
            i = int(i)
            if not 0 <= i < len(self.params) or set(st) != {"step", "exp_avg", "exp_avg_sq"}:
                raise VAEError("The saved optimizer state does not fit this model's parameters; start a new run folder.")
            p = self.params[i]
            if st["exp_avg"].shape != p.shape or st["exp_avg_sq"].shape != p.shape:
                raise VAEError(f"The saved optimizer state has shape {list(st['exp_avg'].shape)} for a parameter "
                               f"of shape {list(p.shape)}; start a new run folder.")
            state[i] = {"step": torch.as_tensor(st["step"], dtype=torch.float32).reshape(()).to(p.device).clone(),
                        "exp_avg": st["exp_avg"].to(p.device, p.dtype).clone(),
                        "exp_avg_sq": st["exp_avg_sq"].to(p.device, p.dtype).clone()}
        self.state = state


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> FusedAdam | torch.optim.Adam:
    """Adam. On CPU and CUDA the fused kernel updates all parameters in one pass, called without
    torch.optim's wrappers, whose first call imports torch's compiler (above)."""
    if device.type in FUSED_DEVICES:
        return FusedAdam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


__all__ = ["FUSED_DEVICES", "FusedAdam", "make_optimizer"]
