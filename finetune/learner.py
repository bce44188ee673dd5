"""The learner: the shared ``train_step`` on RLPD-mixed batches, at a configurable update-to-data ratio.

It runs on the Accelerate device (a GPU when one is present, else the CPU); the weights it publishes
to actors are CPU copies, so an actor never needs the learner's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from finetune.replay import EpisodeReplay, mixed_sample
from qtransformer.batch import make_batch
from qtransformer.bins import ActionBins
from qtransformer.config import TrainConfig
from qtransformer.learning import build_optimizer, build_scheduler, make_target, train_step
from qtransformer.model import QTransformer
from qtransformer.text import TextEncoder


class Learner:
    def __init__(
        self, model: QTransformer, cfg: TrainConfig, bins: ActionBins, encoder: TextEncoder, seed: int = 0
    ):
        self.cfg, self.bins, self.encoder = cfg, bins, encoder
        self.acc = Accelerator()
        self.target = make_target(model).to(self.acc.device)
        optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(optimizer, cfg.optim)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.rng = np.random.default_rng(seed)
        self.updates = 0

    def update(
        self, offline: EpisodeReplay | None, online: EpisodeReplay, batch_size: int, offline_fraction: float
    ) -> dict[str, float]:
        transitions = mixed_sample(offline, online, batch_size, offline_fraction, self.rng)
        batch = make_batch(transitions, self.bins, self.encoder.encode, self.acc.device)
        terms, stepped = train_step(
            self.model, self.target, self.optimizer, batch, self.cfg, self.acc, self.scheduler, self.updates
        )
        self.updates += int(stepped)
        return {k: float(v) for k, v in terms.items()}

    def weights(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().to("cpu", copy=True)
            for k, v in self.acc.unwrap_model(self.model).state_dict().items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.acc.unwrap_model(self.model).state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.acc.unwrap_model(self.model).load_state_dict(d["model"])  # copied onto the model's device
        self.target.load_state_dict(d["target"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.scheduler.load_state_dict(d["scheduler"])
        self.updates = int(d["updates"])
        self.rng.bit_generator.state = d["rng"]
