"""A small torch training (an MLP on seeded synthetic regression data) that colabflow resumes exactly.

Each iteration is one optimizer step over `accumulate_steps` micro-batches, under
`torch.autocast` for fp16 or bf16, with a `GradScaler` for fp16 (torch 2.13 runs fp16 autocast
and the scaler on the CPU as well as on CUDA; a torch that cannot is refused by name).

What must go into the state for a resume to end bit for bit where an uninterrupted run ends:
the model's and the optimizer's state_dicts (Adam's moments and step counts), the scaler's
(its scale and growth tracker), the program's own `torch.Generator` (its `get_state()` tensor)
that draws each epoch's data order, and the order itself with the position in it. The data are
rebuilt from the seed. Dropout draws from torch's global generator, which colabflow snapshots
and restores itself. On CUDA, bit-identical results also need deterministic kernels
(`torch.use_deterministic_algorithms(True)` with `CUBLAS_WORKSPACE_CONFIG=:4096:8`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from tasks.errors import InvalidParameterError
from tasks.iterations.examples.params import (
    read_choice,
    read_float,
    read_int,
    reject_unknown,
)

DEFAULTS = {
    "device": "auto", "precision": "fp32", "accumulate_steps": "1", "batch_size": "32", "lr": "0.003",
    "hidden": "64", "dropout": "0.1", "eval_every": "10", "samples": "4096",
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FEATURES = 16
VALIDATION_SHARE = 0.2


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is a GPU; `cuda` without one is refused rather than silently slow."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("param 'device' is 'cuda' but torch sees no CUDA GPU; pass device=cpu or auto")
    return torch.device(name)


def check_autocast(device: torch.device, precision: str) -> None:
    """Refuse a precision this torch cannot autocast to here (old ones silently fall back to fp32)."""
    if precision == "fp32":
        return
    probe = torch.ones(2, 2, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autocast(device.type, dtype=DTYPES[precision]):
            dtype = torch.mm(probe, probe).dtype
    if dtype != DTYPES[precision]:
        raise InvalidParameterError(
            f"param 'precision' is {precision!r} but torch {torch.__version__} cannot autocast to it on "
            f"{device.type}; pass precision=fp32 or bf16, or upgrade torch"
        )


def make_data(samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of a smooth random teacher function plus a little noise."""
    inputs = torch.randn(samples, FEATURES, generator=generator)
    projection = torch.randn(FEATURES, 8, generator=generator) / FEATURES**0.5
    targets = torch.sin(inputs @ projection).sum(dim=1, keepdim=True)
    return inputs, targets + 0.05 * torch.randn(samples, 1, generator=generator)


def build_model(hidden: int, dropout: float) -> torch.nn.Module:
    """Linear, GELU, dropout, linear: small enough for the CPU, real enough for autocast and Adam."""
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
    )


class Trainer:
    """Train a 2-layer MLP with AdamW; metrics are `loss`, and `val_loss` every `eval_every` iterations.

    Params: device (auto|cpu|cuda), precision (fp32|fp16|bf16), accumulate_steps (1), batch_size (32),
    lr (0.003), hidden (64), dropout (0.1), eval_every (10), samples (4096, a fifth for validation).
    """

    def __init__(self, params: dict[str, str], seed: int) -> None:
        """Parse params, build the data from `seed` and the model from torch's (seeded) global generator."""
        reject_unknown(params, DEFAULTS, "Trainer")
        self.device = resolve_device(read_choice(params, "device", DEFAULTS["device"], ("auto", "cpu", "cuda")))
        self.precision = read_choice(params, "precision", DEFAULTS["precision"], tuple(DTYPES))
        check_autocast(self.device, self.precision)
        self.accumulate_steps = read_int(params, "accumulate_steps", DEFAULTS["accumulate_steps"], 1, 1024)
        self.eval_every = read_int(params, "eval_every", DEFAULTS["eval_every"], 1, 10**9)
        samples = read_int(params, "samples", DEFAULTS["samples"], 10, 10**7)
        validation = max(1, int(samples * VALIDATION_SHARE))
        self.batch_size = read_int(params, "batch_size", DEFAULTS["batch_size"], 1, samples - validation)
        hidden = read_int(params, "hidden", DEFAULTS["hidden"], 1, 65536)
        dropout = read_float(params, "dropout", DEFAULTS["dropout"], 0.0, 0.99, allow_low=True)
        lr = read_float(params, "lr", DEFAULTS["lr"], 0.0, 10.0)
        self.generator = torch.Generator().manual_seed(seed)
        inputs, targets = (tensor.to(self.device) for tensor in make_data(samples, self.generator))
        self.train_inputs, self.train_targets = inputs[validation:], targets[validation:]
        self.val_inputs, self.val_targets = inputs[:validation], targets[:validation]
        self.model = build_model(hidden, dropout).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.epoch = 0
        self.position = 0
        self.order = torch.randperm(len(self.train_inputs), generator=self.generator)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch in this epoch's order; a new order once too few samples remain."""
        if self.position + self.batch_size > len(self.order):
            self.epoch += 1
            self.position = 0
            self.order = torch.randperm(len(self.train_inputs), generator=self.generator)
        indices = self.order[self.position:self.position + self.batch_size].to(self.device)
        self.position += self.batch_size
        return self.train_inputs[indices], self.train_targets[indices]

    def loss_of(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error under autocast, computed in fp32."""
        with torch.autocast(self.device.type, dtype=DTYPES[self.precision], enabled=self.precision != "fp32"):
            predictions = self.model(inputs)
        return torch.nn.functional.mse_loss(predictions.float(), targets)

    def step(self, iteration: int) -> dict[str, float]:
        """One optimizer step over `accumulate_steps` micro-batches; validate every `eval_every`."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for _ in range(self.accumulate_steps):
            loss = self.loss_of(*self.next_batch()) / self.accumulate_steps
            torch.autograd.backward(self.scaler.scale(loss))
            total += loss.detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        metrics = {"loss": float(total)}
        if (iteration + 1) % self.eval_every == 0:
            metrics["val_loss"] = self.validate()
        return metrics

    def validate(self) -> float:
        """The loss over the whole validation split, without dropout."""
        self.model.eval()
        with torch.no_grad():
            return float(self.loss_of(self.val_inputs, self.val_targets))

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer and scaler state, the data generator's state tensor and the data order."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "order": self.order.clone(),
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; tensors saved on another device move to this one."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"].cpu())
        self.order = state["order"].cpu().clone()
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
