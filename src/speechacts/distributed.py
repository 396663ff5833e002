"""Which process of a multi-process training job this is, and what such a job can train.

`torchrun --nproc_per_node N` (or `accelerate launch`) starts N copies of the command and
sets RANK and WORLD_SIZE in each; the transformers Trainer joins them into one process group
(gloo on CPU, NCCL on GPU). Every process reads the same data and makes the same folds (they
depend only on the rows and the seed); only rank 0 logs, writes and registers.
"""

from __future__ import annotations

import os

from speechacts.errors import ConfigError


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in a single process, and in rank 0 of a multi-process job."""
    return rank() == 0


def check(cfg) -> None:
    """Refuse, in every process, a recipe that cannot train on world_size() processes."""
    n = world_size()
    if n == 1:
        return
    if cfg.model.family != "transformer":
        raise ConfigError(f"{cfg.name}: model.family={cfg.model.family} trains in one process; only the transformer "
                          f"trains on several ({n} were started). Run it without torchrun")
    if cfg.model.batch_size % n:
        raise ConfigError(f"{cfg.name}: model.batch_size={cfg.model.batch_size} is the batch of one optimiser step, "
                          f"split across the {n} processes, so it must be a multiple of {n}")
