"""ONNX export at save, its agreement check, and loading on ONNX Runtime without torch or transformers
(models/onnx.py), on tiny randomly initialised BERTs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SENTENCES, tiny_authored
from speechacts import load_classifier
from speechacts.classifier import build, load_model
from speechacts.cli import main
from speechacts.config import EmbeddingsModel, TransformerModel
from speechacts.errors import ModelError
from speechacts.labels import LABELS
from speechacts.models import onnx

ROWS = tiny_authored()
TEXTS = [r["text"] for r in ROWS]
LABELS_OF = [r["label"] for r in ROWS]
# every other row counts as an article sentence, so the article macro-F1 check scores a subset
CHECK = onnx.CheckSet(TEXTS, LABELS_OF, [i % 2 == 0 for i in range(len(TEXTS))])
CONTEXTS = ["Officials met in Geneva on Monday."] * len(TEXTS)


def config(family: str, tiny_bert: str, **changes):
    if family == "embeddings":
        return EmbeddingsModel(pretrained=tiny_bert, max_length=32, device="cpu", **changes)
    return TransformerModel(pretrained=tiny_bert, epochs=2, batch_size=8, max_length=32, learning_rate=1e-3,
                            device="cpu", **changes)


def fitted(family: str, tiny_bert: str, **changes):
    cfg = config(family, tiny_bert, **changes)
    contexts = CONTEXTS if cfg.context != "none" else None
    return build(cfg, seed=0).fit(TEXTS, LABELS_OF, contexts), contexts


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    """Per family (and the transformer with a context): the fitted model and its directory saved with ONNX."""
    out = {}
    for key, family, changes in (("transformer", "transformer", {}), ("embeddings", "embeddings", {}),
                                 ("transformer+context", "transformer", {"context": "previous"})):
        model, contexts = fitted(family, tiny_bert, **changes)
        check = onnx.CheckSet(TEXTS, LABELS_OF, CHECK.in_article, contexts)
        out[key] = SimpleNamespace(model=model, contexts=contexts,
                                   dir=model.save(tmp_path_factory.mktemp(key.replace("+", "-")) / "model", check=check))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("key", ["transformer", "embeddings", "transformer+context"])
def test_onnx_gives_torch_probabilities_and_int8_its_labels(exported, key):
    saved = exported[key]
    record = json.loads((saved.dir / onnx.RECORD).read_text())
    assert record["default_runtime"] == "onnx" and record["onnx_file"] == onnx.INT8
    assert {kind: r["kept"] for kind, r in record["checks"].items()} == {"fp32": True, "int8": True}
    folder = saved.dir / onnx.weights_dir(saved.model.family)
    assert (folder / onnx.FP32).is_file() and (folder / onnx.INT8).is_file() and (folder / "model.safetensors").is_file()
    probe = SENTENCES + ["Officials met.", "Any attack on our ships will be answered at once and in force, the admiral said."]
    contexts = None if saved.contexts is None else ["The talks broke down."] * len(probe)
    torch_proba = saved.model.predict_proba(probe, contexts)
    fp32 = onnx.runner(saved.model.family, saved.model.cfg, folder / onnx.FP32, getattr(saved.model, "head_", None))
    assert fp32.predict_proba(probe, contexts) == pytest.approx(torch_proba, abs=1e-5)
    loaded = load_model(saved.dir)
    assert loaded.runtime == "onnx"
    int8 = loaded.predict_proba(probe, contexts)
    assert np.abs(int8 - torch_proba).max() < 0.05
    assert load_model(saved.dir, "torch").predict_proba(probe, contexts) == pytest.approx(torch_proba, abs=1e-6)


@pytest.mark.slow
def test_onnx_truncates_like_torch_with_the_same_warning(exported):
    long = "Russia warned that " + ", ".join(f"sanctions on sector {i}" for i in range(20)) + " would bring a response."
    saved = exported["transformer"]
    with pytest.warns(UserWarning, match="1 text\\(s\\) longer than the model's maximum of 32 tokens") as torch_warned:
        torch_proba = saved.model.predict_proba([long, SENTENCES[0]])
    fp32 = onnx.runner("transformer", saved.model.cfg, saved.dir / "hf" / onnx.FP32)
    with pytest.warns(UserWarning) as onnx_warned:
        assert fp32.predict_proba([long, SENTENCES[0]]) == pytest.approx(torch_proba, abs=1e-5)
    assert [str(w.message) for w in onnx_warned] == [str(w.message) for w in torch_warned]


@pytest.mark.slow
def test_an_int8_export_that_disagrees_with_torch_is_refused_and_fp32_ships(tiny_bert, tmp_path, monkeypatch):
    """A quantized file whose classifier bias is pushed towards the label torch predicts least labels
    most sentences differently: it is not saved, a warning says why, and the fp32 file is the default."""
    import onnx as onnx_format
    from onnx import numpy_helper

    model, _ = fitted("transformer", tiny_bert)
    rarest = min(LABELS, key=Counter(model.predict(TEXTS)).__getitem__)
    original = onnx.export

    def corrupted(*args, **kwargs):
        files = original(*args, **kwargs)
        graph = onnx_format.load(str(files["int8"]))
        bias = next(i for i in graph.graph.initializer if i.name.endswith("classifier.bias"))
        bias.CopyFrom(numpy_helper.from_array(np.where(np.arange(len(LABELS)) == LABELS.index(rarest), 50.0, 0.0)
                                              .astype(np.float32), bias.name))
        onnx_format.save(graph, str(files["int8"]))
        return files

    monkeypatch.setattr(onnx, "export", corrupted)
    with pytest.warns(UserWarning, match=r"ONNX int8 labels agree with torch on \d+\.\d+% of the check sentences, "
                                         r"under the 99% required: model.int8.onnx is not saved"):
        saved = model.save(tmp_path / "model", check=CHECK)
    record = json.loads((saved / onnx.RECORD).read_text())
    assert record["checks"]["int8"]["kept"] is False and "under the 99% required" in record["checks"]["int8"]["refused"]
    assert record["checks"]["fp32"]["kept"] is True
    assert record["default_runtime"] == "onnx" and record["onnx_file"] == onnx.FP32
    assert not (saved / "hf" / onnx.INT8).exists()
    metrics = onnx.metrics(saved)
    assert metrics["onnx_int8_kept"] == 0.0 and metrics["onnx_int8_label_agreement"] < 0.99
    assert metrics["onnx_fp32_label_agreement"] == 1.0 and metrics["onnx_fp32_max_proba_diff"] < 1e-5
    assert load_model(saved).predict_proba(TEXTS) == pytest.approx(model.predict_proba(TEXTS), abs=1e-5)


def test_refusal_names_the_failed_rule():
    agree = {"label_agreement": 0.995, "max_proba_diff": 0.1, "article_macro_f1_torch": 0.70,
             "article_macro_f1": 0.685, "article_macro_f1_drop": 0.015}
    assert onnx.refusal("int8", agree) == ("ONNX int8 article macro-F1 0.6850 is 0.0150 below torch's 0.7000 "
                                           "(at most 0.01 allowed)")
    assert onnx.refusal("int8", {**agree, "label_agreement": 0.98}) == (
        "ONNX int8 labels agree with torch on 98.00% of the check sentences, under the 99% required")
    assert onnx.refusal("int8", {**agree, "article_macro_f1_drop": 0.005}) is None


def test_compare_scores_article_sentences_against_the_true_labels():
    reference = np.eye(len(LABELS))[[0, 1, 2, 3]]
    proba = np.eye(len(LABELS))[[0, 1, 2, 4]]
    check = onnx.CheckSet(["a", "b", "c", "d"], ["threat", "demand", "denial", "offer"], [True, True, True, True])
    result = onnx.compare(reference, proba, check)
    assert result["label_agreement"] == 0.75 and result["max_proba_diff"] == 1.0
    assert result["article_macro_f1_torch"] == pytest.approx(0.8) and result["article_macro_f1"] == pytest.approx(0.6)


@pytest.mark.slow
def test_when_every_export_is_refused_the_model_runs_on_torch(tiny_bert, tmp_path, monkeypatch):
    model, _ = fitted("embeddings", tiny_bert, export="onnx")
    monkeypatch.setattr(onnx, "MIN_AGREEMENT", 1.01)
    with pytest.warns(UserWarning, match="ONNX fp32 labels agree with torch on 100.00% of the check sentences, "
                                         "under the 101% required: model.onnx is not saved"):
        saved = model.save(tmp_path / "model", check=CHECK)
    assert json.loads((saved / onnx.RECORD).read_text())["default_runtime"] == "torch"
    assert list((saved / "encoder").glob("*.onnx")) == [] and load_model(saved).runtime == "torch"
    with pytest.raises(ModelError, match="runtime onnx asked for, but its ONNX export did not agree with torch"):
        load_model(saved, "onnx")


def test_export_none_and_a_save_without_check_sentences_write_no_onnx(tiny_bert, tmp_path):
    model, _ = fitted("embeddings", tiny_bert, export="none")
    saved = model.save(tmp_path / "none", check=CHECK)
    assert not (saved / onnx.RECORD).exists() and list(saved.rglob("*.onnx")) == []
    model.cfg = model.cfg.model_copy(update={"export": "onnx-int8"})
    saved = model.save(tmp_path / "unchecked")
    assert not (saved / onnx.RECORD).exists() and load_model(saved).runtime == "torch"


def test_runtime_onnx_without_an_export_is_a_clear_error(tiny_bert, tiny_baseline_dir, tmp_path, capsys):
    model, _ = fitted("embeddings", tiny_bert)
    saved = model.save(tmp_path / "model")
    with pytest.raises(ModelError, match="runtime onnx asked for, but it was saved without an ONNX export; use "
                                         "--runtime torch, or retrain it with model.export=onnx-int8"):
        load_classifier(saved, runtime="onnx")
    assert main(["predict", "--model", str(tiny_baseline_dir), "--runtime", "onnx", "Talks resume."]) == 2
    assert capsys.readouterr().err == (f"error: {tiny_baseline_dir}: a baseline model has no ONNX runtime (it runs on "
                                       "numpy alone); drop --runtime onnx, or pick a transformer or embeddings "
                                       "model\n")
    assert load_classifier(tiny_baseline_dir, runtime="torch").family == "baseline"


def test_an_unknown_runtime_is_refused(tiny_baseline_dir, capsys):
    with pytest.raises(ModelError, match="unknown runtime 'tensorrt'; expected torch or onnx"):
        load_classifier(tiny_baseline_dir, runtime="tensorrt")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(tiny_baseline_dir), "--runtime", "tensorrt", "Talks resume."])
    assert exit_.value.code == 2
    assert "argument --runtime: invalid choice: 'tensorrt' (choose from 'torch', 'onnx')" in capsys.readouterr().err


def test_a_damaged_export_record_is_one_clear_error(tiny_baseline_dir, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_baseline_dir, tmp_path / "model")
    (copy / onnx.RECORD).write_text('{"default_runtime": "tensorrt"}')
    with pytest.raises(ModelError, match="onnx.json: expected an object with default_runtime torch or onnx"):
        load_model(copy)


LOAD_AND_PREDICT = """
import sys
from speechacts.cli import main
code = main(["predict", "--model", sys.argv[1], "--format", "jsonl", "Russia denies any such plans."])
from speechacts import load_classifier
classifier = load_classifier(sys.argv[1])
classifier.predict(["Talks will resume."])
print("runtime", classifier.runtime, "exit", code)
print("heavy", sorted(name for name in ("torch", "transformers", "sklearn", "mlflow", "skops") if name in sys.modules))
"""


@pytest.mark.slow
@pytest.mark.parametrize("key", ["transformer", "embeddings"])
def test_the_onnx_runtime_imports_neither_torch_nor_transformers(exported, key):
    out = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(exported[key].dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"label"' in out.stdout and "runtime onnx exit 0" in out.stdout
    assert "heavy []" in out.stdout


@pytest.mark.slow
def test_the_pyfunc_loads_the_onnx_runtime(exported):
    from speechacts.serving import SpeechactsModel

    served = SpeechactsModel()
    served.load_context(SimpleNamespace(artifacts={"model_dir": str(exported["transformer"].dir)}))
    assert served.model.runtime == "onnx"
    frame = served.predict(None, {"text": SENTENCES})
    assert list(frame["label"]) == [LABELS[i] for i in served.model.predict_proba(SENTENCES).argmax(axis=1)]


def test_the_export_summary_names_what_was_kept_and_refused_and_the_runtime(tmp_path):
    assert onnx.summary(tmp_path) is None  # saved without an export
    record = {"default_runtime": "onnx", "onnx_file": "model.onnx", "checks": {
        "fp32": {"label_agreement": 1.0, "article_macro_f1_drop": 0.0, "kept": True},
        "int8": {"kept": False, "refused": "ONNX int8 labels agree with torch on 95.95% of the check sentences, "
                                           "under the 99% required"}}}
    (tmp_path / onnx.RECORD).write_text(json.dumps(record), encoding="utf-8")
    assert onnx.summary(tmp_path) == (
        "ONNX export: fp32 kept (labels agree 100.00%, article macro-F1 0.000 below torch); int8 refused (ONNX int8 "
        "labels agree with torch on 95.95% of the check sentences, under the 99% required); the model loads on onnx "
        "(model.onnx)")
