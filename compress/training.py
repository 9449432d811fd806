"""A seeded, deterministic CPU training loop over in-memory tensors, and evaluation.

Same seed => identical weights and metrics. Fine-tuning (after pruning, orthogonalisation, ...)
uses the same loop; anything registered on the model (pruning masks, parametrizations) stays in
force because the loop only calls ``model(x)`` and steps the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compress.datasets import DatasetSplit

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingError(RuntimeError):
    """Training could not go on (NaN loss, ...)."""


class Cancelled(RuntimeError):
    """The cancellation check asked the loop to stop."""


class TrainConfig(BaseModel):
    """How to train or fine-tune."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=0, le=200, description="Passes over the training split.")
    lr: float = Field(default=1e-3, gt=0, le=10, description="Learning rate.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Samples per optimizer step.")
    optimizer: Literal["adam", "sgd", "adamw"] = Field(default="adam", description="Optimizer.")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="L2 weight decay.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for init order and shuffling.")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(
    model: nn.Module,
    data: DatasetSplit,
    cfg: TrainConfig,
    progress: Progress | None = None,
    should_cancel: CancelCheck | None = None,
    loss_fn: LossFn | None = None,
) -> list[float]:
    """Train ``model`` in place; returns the mean training loss of each epoch.

    ``loss_fn(logits, targets, inputs)`` replaces cross-entropy (knowledge distillation uses it).
    """
    if cfg.epochs == 0:
        return []
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = _optimizer(model, cfg)
    n = len(data.train_x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    report_every = max(1, steps_per_epoch // 10)
    losses: list[float] = []
    step = 0
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x, y = data.train_x[idx], data.train_y[idx]
            logits = model(x)
            loss = loss_fn(logits, y, x) if loss_fn else F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
                    f"try a lower learning rate (now {cfg.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            step += 1
            if step % report_every == 0:
                if should_cancel and should_cancel():
                    model.eval()
                    raise Cancelled("cancelled during training")
                if progress:
                    progress(step / total, f"epoch {epoch + 1}/{cfg.epochs}, loss {loss.item():.4f}")
        losses.append(running / n)
    model.eval()
    if progress:
        progress(1.0, f"trained {cfg.epochs} epoch(s), last loss {losses[-1]:.4f}")
    return losses


EVAL_BATCH = 128
"""Evaluation batch size. Bigger is not faster on CPU: mnist-cnn's activations at batch 1,024 (100 MB
for conv1's output alone) overflow the caches, and evaluation ran 2.6x slower than at 128-192
(bench/throughput.py: 50 vs 131 GFLOP/s on 2 cores). int8 models are insensitive to it."""


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, data: DatasetSplit, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Top-1 accuracy (%) and mean cross-entropy on the whole evaluation split."""
    acc, loss, _ = evaluate_samples(model, data, batch_size)
    return acc, loss


def evaluate_samples(
    model: nn.Module, data: DatasetSplit, batch_size: int = EVAL_BATCH
) -> tuple[float, float, torch.Tensor]:
    """:func:`evaluate` plus which evaluation samples the model got right (a bool tensor in split order),
    so that two models can be compared on the same samples (a paired test, :mod:`compress.stats`)."""
    logits = predict_logits(model, data.eval_x, batch_size).float()
    loss = F.cross_entropy(logits, data.eval_y).item()
    correct = logits.argmax(1) == data.eval_y
    acc = correct.float().mean().item() * 100.0
    return acc, loss, correct
