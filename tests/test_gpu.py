"""On a CUDA device: a tiny transformer trains there, and saved and loaded comes back there.
Marked gpu: skipped where no CUDA device is present (conftest.py)."""

import numpy as np
import pytest

from conftest import tiny_authored
from speechacts.classifier import build, load_model
from speechacts.config import TransformerModel

ROWS = tiny_authored()
PROBE = ["The ministry rejected the report as baseless.", "Both sides agreed to meet again in March."]


@pytest.mark.gpu
def test_a_tiny_transformer_trains_saves_and_loads_on_cuda(tiny_bert, tmp_path):
    import torch

    cfg = TransformerModel(pretrained=tiny_bert, epochs=1, batch_size=8, max_length=32, device="cuda")
    allocations = torch.cuda.memory_stats().get("allocation.all.allocated", 0)
    model = build(cfg, seed=0).fit([r["text"] for r in ROWS], [r["label"] for r in ROWS])
    assert next(model.model_.parameters()).device.type == "cuda"
    # trained there, not only moved there at the end: moving allocates once per tensor, training far more
    tensors = sum(1 for _ in model.model_.parameters()) + sum(1 for _ in model.model_.buffers())
    assert torch.cuda.memory_stats()["allocation.all.allocated"] - allocations > 10 * tensors
    proba = model.predict_proba(PROBE)
    loaded = load_model(model.save(tmp_path / "model", config={"model": cfg.model_dump(mode="json")}))
    assert next(loaded.model_.parameters()).device.type == "cuda"
    assert np.allclose(loaded.predict_proba(PROBE), proba, atol=1e-5)
