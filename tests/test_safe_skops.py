"""Model files load only the exact types the project's pipelines hold; nothing in a file runs."""

import json
import subprocess
import sys
import zipfile

import pytest

from conftest import SENTENCES, crafted_model
from speechacts import load_classifier
from speechacts.cli import main
from speechacts.errors import ModelError
from speechacts.models import safe_skops


def old_pipeline(context: bool):
    """A fitted pipeline of the kind the baseline saved as pipeline.skops before it saved plain arrays
    (models/baseline.py); the embeddings head (a LogisticRegression) is made of a subset of its types."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    def tfidf(analyzer):
        return Pipeline([("counts", HashingVectorizer(analyzer=analyzer, n_features=2**10, alternate_sign=False)),
                         ("tfidf", TfidfTransformer())])

    texts = ["Talks resume.", "We reject it.", "Pay or else.", "Leave now.", "We offer help."] * 2
    labels = ["assessment", "denial", "threat", "demand", "offer"] * 2
    if context:
        import pandas as pd

        features = ColumnTransformer([("word", tfidf("word"), "text"), ("context", tfidf("word"), "context")])
        data = pd.DataFrame({"text": texts, "context": ["", "x"] * 5})
    else:
        features, data = FeatureUnion([("word", tfidf("word")), ("char", tfidf("char_wb"))]), texts
    return Pipeline([("features", features), ("classifier", LogisticRegression())]).fit(data, labels)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    """A directory holding a skops pipeline (as old baselines did)."""
    folder = tmp_path_factory.mktemp("old-baseline")
    safe_skops.dump(old_pipeline(context=False), folder / "pipeline.skops")
    return folder


def test_the_allow_list_is_exactly_what_the_old_baseline_pipelines_hold(baseline_dir, tmp_path):
    plain = safe_skops.types_in(safe_skops.read_schema(baseline_dir / "pipeline.skops"))
    safe_skops.dump(old_pipeline(context=True), tmp_path / "context.skops")
    with_context = safe_skops.types_in(safe_skops.read_schema(tmp_path / "context.skops"))
    assert plain | with_context == safe_skops.ALLOWED


def test_a_crafted_pipeline_is_refused_by_name_and_runs_nothing(tiny_baseline_dir, tmp_path, capsys):
    """The baseline no longer reads skops files at all; safe_skops itself refuses the crafted one by name."""
    marker = tmp_path / "MARKER"
    evil = crafted_model(tiny_baseline_dir, tmp_path / "evil", marker)
    with pytest.raises(ModelError) as err:
        safe_skops.load(evil / "pipeline.skops", {})
    message = str(err.value)
    assert "\n" not in message
    assert ("pipeline.skops: refused to load type(s) numpy.full_like, numpy.object_, numpy.take and 2 more: "
            "speechacts models never hold them") in message
    assert safe_skops.refused_types(evil / "pipeline.skops") == [
        "numpy.full_like", "numpy.object_", "numpy.take", "numpy.testing._private.utils.runstring",
        "sklearn.preprocessing._function_transformer.FunctionTransformer"]
    assert len(load_classifier(evil).predict(SENTENCES)) == len(SENTENCES)  # read from the plain arrays
    for name in ("baseline.json", "baseline.safetensors"):  # a directory of the old format
        (evil / name).unlink()
    assert main(["predict", "--model", str(evil), "Talks resume."]) == 2
    assert capsys.readouterr().err.startswith(f"error: {evil}: a baseline saved as a scikit-learn pipeline")
    assert not marker.exists()


def test_the_loader_imports_nothing_the_file_names(baseline_dir, tmp_path):
    """A type from a module that does not exist would fail at import; refusal comes first."""
    evil = tmp_path / "evil"
    evil.mkdir()
    with zipfile.ZipFile(baseline_dir / "pipeline.skops") as src, zipfile.ZipFile(evil / "pipeline.skops", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "schema.json":
                schema = json.loads(data)
                schema["__module__"], schema["__class__"] = "speechacts_attack_module", "Boom"
                data = json.dumps(schema).encode()
            dst.writestr(item, data)
    script = (f"import sys; from speechacts.models import safe_skops; from pathlib import Path\n"
              f"print(safe_skops.refused_types(Path({str(evil / 'pipeline.skops')!r})))\n"
              "print('speechacts_attack_module' in sys.modules, 'skops.io' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["['speechacts_attack_module.Boom']", "False False"], out.stderr


def test_saving_a_model_with_a_type_off_the_list_is_refused(tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(ModelError, match=r"holds types speechacts does not load \(.*FunctionTransformer\)"):
        safe_skops.dump(Pipeline([("f", FunctionTransformer())]), tmp_path / "x.skops")
    assert not (tmp_path / "x.skops").exists()
