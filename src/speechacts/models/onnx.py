"""ONNX export of the Hugging Face families, its agreement check, and inference with ONNX Runtime.

Export (at save, when training hands over its sentences): the fine-tuned classifier (logits) or
the embeddings family's encoder (last hidden state) is written beside its safetensors weights as
`model.onnx` (fp32, by torch.onnx's dynamo exporter: the TorchScript one is deprecated) and, with
`model.export: onnx-int8`, `model.int8.onnx` (onnxruntime's dynamic quantization: int8 weights,
activations quantized on the fly). Each file is scored against torch on the check sentences:
label agreement, largest probability difference, and article macro-F1 against the true labels.
A file whose agreement is under MIN_AGREEMENT, or whose article macro-F1 is more than
MAX_F1_DROP below torch's, is not kept (a warning says so) and the next runtime is the default.
`onnx.json` records the checks and the default runtime: the fastest that passed (int8, then fp32,
then torch; bench/bench_predict.py measures that order).

Inference: onnxruntime and the `tokenizers` library read the ONNX file and tokenizer.json;
neither torch nor transformers is imported, so a model loads in a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechacts.classifier import Classifier
from speechacts.errors import ModelError
from speechacts.labels import LABELS, top_labels

FP32, INT8 = "model.onnx", "model.int8.onnx"
RECORD = "onnx.json"
RUNTIMES = ("torch", "onnx")
MIN_AGREEMENT = 0.99  # share of check sentences whose ONNX label is torch's
MAX_F1_DROP = 0.01  # article macro-F1 an ONNX file may lose against torch
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# what the exporter traces: two texts of different lengths, so the graph keeps its padding mask
SAMPLE = (["Talks resume on Monday.", "The ministry rejected the claim as baseless and politically motivated."],
          ["", "Officials met in Geneva."])
log = logging.getLogger(__name__)


@dataclass
class CheckSet:
    """The sentences an export is checked on, with their true labels and whether each is in an article."""

    texts: list[str]
    labels: list[str]
    in_article: list[bool]
    contexts: list[str] | None = None


# -- export (torch side) ------------------------------------------------------------------------

def export(module, tokenizer, folder: Path, output: str, pairs: bool, int8: bool) -> dict[str, Path]:
    """Write folder/model.onnx (and model.int8.onnx) from a torch module whose forward returns `output`."""
    import copy

    import torch

    class Outputs(torch.nn.Module):
        """The module's forward with positional token inputs, returning one tensor."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return getattr(self.inner(**{name: given[name] for name in names}), output)

    sample = tokenizer(SAMPLE[0], SAMPLE[1] if pairs else None, padding=True, return_tensors="pt")
    names = [name for name in INPUTS if name in sample]
    wrapped = Outputs(copy.deepcopy(module).to("cpu").eval()).eval()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    files = {"fp32": folder / FP32}
    with warnings.catch_warnings(), quiet_loggers("torch", "onnxscript", "root"):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, tuple(sample[name] for name in names), str(files["fp32"]), input_names=names,
                          output_names=[output], dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={name: {0: batch, 1: length} for name in names})
        if int8:
            files["int8"] = quantize(files["fp32"], folder / INT8)
    return files


def quantize(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization: int8 weights with one scale per output channel (on the first small
    models it halved the largest probability difference to fp32 and raised label agreement from
    92-93% to 96%, against one scale per tensor), activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_loggers("root"):
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    return target


class quiet_loggers:
    """Raise some loggers to ERROR for a while: the exporter and quantizer narrate every step."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(None if name == "root" else name) for name in names]

    def __enter__(self):
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for logger, level in zip(self.loggers, self.levels):
            logger.setLevel(level)


def compare(reference: np.ndarray, proba: np.ndarray, check: CheckSet) -> dict[str, float]:
    """Label agreement, largest probability difference and the article macro-F1 drop of `proba`
    against the torch `reference` (article sentences; every sentence where there are none)."""
    from speechacts.evaluation import scores  # export runs at training time: scikit-learn is loaded

    ref_labels, labels = top_labels(reference), top_labels(proba)
    scored = [i for i, a in enumerate(check.in_article) if a] or list(range(len(check.texts)))
    truth = [check.labels[i] for i in scored]
    torch_f1 = scores(truth, [ref_labels[i] for i in scored])["macro_f1"]
    onnx_f1 = scores(truth, [labels[i] for i in scored])["macro_f1"]
    return {"label_agreement": float(np.mean([a == b for a, b in zip(ref_labels, labels)])),
            "max_proba_diff": float(np.abs(reference - proba).max()),
            "article_macro_f1_torch": torch_f1, "article_macro_f1": onnx_f1,
            "article_macro_f1_drop": torch_f1 - onnx_f1}


def refusal(kind: str, result: dict[str, float]) -> str | None:
    """Why an export may not be kept, or None when it agrees with torch well enough."""
    if result["label_agreement"] < MIN_AGREEMENT:
        return (f"ONNX {kind} labels agree with torch on {result['label_agreement']:.2%} of the check sentences, "
                f"under the {MIN_AGREEMENT:.0%} required")
    if result["article_macro_f1_drop"] > MAX_F1_DROP:
        return (f"ONNX {kind} article macro-F1 {result['article_macro_f1']:.4f} is "
                f"{result['article_macro_f1_drop']:.4f} below torch's {result['article_macro_f1_torch']:.4f} "
                f"(at most {MAX_F1_DROP} allowed)")
    return None


def export_checked(model, module, tokenizer, path: Path, output: str, check: CheckSet) -> dict[str, Any]:
    """Export the model's network beside its weights in the model directory `path`, keep each file
    that agrees with torch on the check sentences, and write path/onnx.json; returns that record."""
    import time

    from speechacts.calibration import PostProcess

    cfg = model.cfg
    post = model.post_ or PostProcess()
    folder = path / weights_dir(model.family)
    started = time.perf_counter()
    files = export(module, tokenizer, folder, output, pairs=model.context != "none", int8=cfg.export == "onnx-int8")
    record: dict[str, Any] = {"export_seconds": round(time.perf_counter() - started, 3), "checked_on": len(check.texts),
                              "min_agreement": MIN_AGREEMENT, "max_f1_drop": MAX_F1_DROP, "checks": {}}
    started = time.perf_counter()
    with warnings.catch_warnings():  # truncation: the model's own training sentences, already reported
        warnings.simplefilter("ignore")
        reference = post(model._predict_proba(check.texts, check.contexts))
    record["torch_seconds"] = round(time.perf_counter() - started, 3)
    default = "torch"
    for kind, file in files.items():
        loaded = runner(model.family, cfg, file, getattr(model, "head_", None))
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = post(loaded._predict_proba(check.texts, check.contexts))
        seconds = round(time.perf_counter() - started, 3)
        result = {"file": file.name, "seconds": seconds, **compare(reference, proba, check)}
        reason = refusal(kind, result)
        result["kept"] = reason is None
        if reason:
            result["refused"] = reason
            file.unlink()
            warnings.warn(f"{reason}: {file.name} is not saved", UserWarning, stacklevel=2)
        record["checks"][kind] = result
    kept = [kind for kind in ("int8", "fp32") if record["checks"].get(kind, {}).get("kept")]
    if kept:
        default = "onnx"
        record["onnx_file"] = record["checks"][kept[0]]["file"]
    record["default_runtime"] = default
    (path / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def summary(model_dir: Path) -> str | None:
    """One line on what the export kept and refused, and the runtime the model loads on; None without one."""
    record = read_record(Path(model_dir))
    if record is None:
        return None
    parts = [f"{kind} kept (labels agree {r['label_agreement']:.2%}, article macro-F1 "
             f"{r['article_macro_f1_drop']:.3f} below torch)" if r["kept"] else f"{kind} refused ({r['refused']})"
             for kind, r in record.get("checks", {}).items()]
    runtime = record["default_runtime"] + (f" ({record['onnx_file']})" if "onnx_file" in record else "")
    return f"ONNX export: {'; '.join(parts) or 'no files'}; the model loads on {runtime}"


def metrics(model_dir: Path) -> dict[str, float]:
    """The checks of a saved model's export as MLflow metrics (onnx_int8_label_agreement, ...)."""
    record = read_record(Path(model_dir))
    out = {}
    for kind, result in (record or {}).get("checks", {}).items():
        for key in ("label_agreement", "max_proba_diff", "article_macro_f1", "article_macro_f1_drop"):
            out[f"onnx_{kind}_{key}"] = result[key]
        out[f"onnx_{kind}_kept"] = float(result["kept"])
    return out


# -- loading and inference (no torch, no transformers) ------------------------------------------

def read_record(path: Path) -> dict[str, Any] | None:
    """onnx.json of a model directory, or None where the model was saved without an export."""
    file = path / RECORD
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: unreadable export record: {exc}; the file is damaged, retrain the model") from None
    if not isinstance(record, dict) or record.get("default_runtime") not in RUNTIMES:
        raise ModelError(f"{file}: expected an object with default_runtime torch or onnx; the file is damaged, "
                         "retrain the model")
    return record


def choose(path: Path, meta: dict[str, Any], runtime: str | None) -> str:
    """The runtime to load a model directory with: the one asked for, else the one its export chose."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}; expected torch or onnx (or none: the model's default)")
    record = read_record(path)
    if runtime == "onnx" and (record is None or "onnx_file" not in record):
        if meta["family"] == "baseline":
            raise ModelError(f"{path}: a baseline model has no ONNX runtime (it runs on numpy alone); "
                             "drop --runtime onnx, or pick a transformer or embeddings model")
        why = ("it was saved without an ONNX export" if record is None else
               "its ONNX export did not agree with torch (see onnx.json)")
        raise ModelError(f"{path}: runtime onnx asked for, but {why}; use --runtime torch, or retrain it with "
                         "model.export=onnx-int8 (or onnx)")
    return runtime or (record or {}).get("default_runtime", "torch")


def load(path: Path, meta: dict[str, Any]) -> Classifier:
    """A saved transformer or embeddings model that runs on ONNX Runtime, with the file its export kept."""
    from speechacts.classifier import saved_model_config
    from speechacts.config import EmbeddingsModel, TransformerModel

    cfg = saved_model_config(path, meta, TransformerModel if meta["family"] == "transformer" else EmbeddingsModel)
    head = None
    if meta["family"] == "embeddings":
        from speechacts.models.embeddings import load_head

        head = load_head(path, meta)
    return runner(meta["family"], cfg, path / weights_dir(meta["family"]) / read_record(path)["onnx_file"], head)


def weights_dir(family: str) -> str:
    """The folder of a family's weights, tokenizer and ONNX files inside a model directory."""
    if family == "transformer":
        from speechacts.models.transformer import WEIGHTS_DIR

        return WEIGHTS_DIR
    from speechacts.models.embeddings import ENCODER_DIR

    return ENCODER_DIR


def runner(family: str, cfg, file: Path, head=None) -> Classifier:
    """A classifier of the family whose network is the ONNX file (the embeddings family: with its head)."""
    if family == "transformer":
        return OnnxTransformerClassifier(cfg, OnnxNetwork(file, cfg.max_length, cfg.predict_batch_size))
    from speechacts.models.embeddings import EmbeddingsClassifier

    model = EmbeddingsClassifier(cfg, encoder=OnnxEncoder(OnnxNetwork(file, cfg.max_length, cfg.batch_size)), head=head)
    model.runtime = "onnx"
    return model


class FullLength:
    """What hf.warn_if_truncated asks of a tokenizer (the untruncated ids of a text), from `tokenizers`."""

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def __call__(self, text: str, add_special_tokens: bool = True, truncation: bool = False) -> dict:
        return {"input_ids": self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}


class OnnxNetwork:
    """An ONNX file and the tokenizer.json beside it: texts (or text pairs) in, the network's output out."""

    def __init__(self, file: Path, max_length: int, batch_size: int):
        import onnxruntime
        from tokenizers import Tokenizer

        folder = file.parent
        if not file.is_file():
            raise ModelError(f"{file}: missing; the model directory is incomplete, retrain it or use --runtime torch")
        if not (folder / "tokenizer.json").is_file():
            raise ModelError(f"{folder / 'tokenizer.json'}: missing, which the ONNX runtime needs; use --runtime torch")
        self.max_length, self.batch_size = max_length, batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")) \
            if (folder / "tokenizer_config.json").is_file() else {}
        pad = settings.get("pad_token") or "[PAD]"
        self.tokenizer.enable_truncation(max_length)  # longest_first, as transformers' truncation=True
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad) or 0, pad_token=pad)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def batches(self, texts: list[str], pairs: list[str] | None = None):
        """Yield (indices, output, attention mask) in batches of texts sorted by length (little padding)."""
        size = (lambda i: len(texts[i]) + len(pairs[i])) if pairs is not None else (lambda i: len(texts[i]))
        order = sorted(range(len(texts)), key=size)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            items = [(texts[i], pairs[i]) for i in index] if pairs is not None else [texts[i] for i in index]
            encoded = self.tokenizer.encode_batch(items)
            feed = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64)}
            yield index, self.session.run(None, {name: feed[name] for name in self.inputs})[0], feed["attention_mask"]

    def warn_if_truncated(self, texts: list[str], candidates: list[int]) -> None:
        from speechacts.models.hf import warn_if_truncated

        if candidates:
            warn_if_truncated(FullLength(self.tokenizer), texts, self.max_length, candidates)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class OnnxTransformerClassifier(Classifier):
    """The fine-tuned transformer on ONNX Runtime: same interface and post-processing as on torch."""

    family = "transformer"
    runtime = "onnx"

    def __init__(self, cfg, network: OnnxNetwork):
        self.cfg, self.network = cfg, network

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), len(LABELS)))
        pairs = list(contexts or [""] * len(texts)) if self.context != "none" else None
        candidates = []
        for index, logits, mask in self.network.batches(texts, pairs):
            out[index] = softmax(logits)
            candidates += [index[j] for j in np.flatnonzero(mask.sum(axis=1) >= self.network.max_length)]
        if pairs is None:  # with a context, the context is cut first; the sentence rarely is
            self.network.warn_if_truncated(texts, candidates)
        return out


class OnnxEncoder:
    """The embeddings family's encoder on ONNX Runtime: the Encoder interface (encode) without torch.
    Mean pooling and L2 normalisation are written here in numpy, because the point is not to
    import torch; the torch Encoder uses sentence-transformers' Pooling and Normalize modules."""

    def __init__(self, network: OnnxNetwork):
        self.network = network

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out, candidates = None, []
        for index, hidden, mask in self.network.batches(texts):
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[index] = pooled
            candidates += [index[j] for j in np.flatnonzero(mask.sum(axis=1) >= self.network.max_length)]
        self.network.warn_if_truncated(texts, candidates)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)
