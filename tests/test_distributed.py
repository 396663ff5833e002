"""Training on several processes with torchrun: gloo on CPU here, NCCL on a multi-GPU machine."""

import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from conftest import ROOT, tiny_overrides
from speechacts import distributed, train
from speechacts.config import load_config
from speechacts.errors import ConfigError

TRANSFORMER = ROOT / "configs/transformer.yaml"
# Two processes take halves of the same batches (split_batches), so they follow the single-process
# schedule; what differs is dropout drawn per process, float sums in another order, and accelerate
# filling a short last batch with examples from the start so that it splits evenly.
CURVES = ("train_loss", "val_loss", "optimizer_steps")
TOLERANCE = {"loss": 0.01, "probability": 0.01, "score": 0.05}  # largest differences allowed


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "speechacts.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def fold_curves(store: str, parent_id: str) -> dict[tuple[str, str, int], float]:
    """{(fold, metric, epoch): value} of the per-epoch curves logged in a job's fold runs."""
    client = mlflow.MlflowClient(store)
    folds = client.search_runs([client.get_run(parent_id).info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {(run.data.tags["fold"], name, m.step): m.value for run in folds for name in CURVES
            for m in client.get_metric_history(run.info.run_id, name)}


@pytest.mark.slow
def test_two_cpu_processes_train_like_one(project, tmp_path, tiny_bert):
    extra = [f"model.pretrained={tiny_bert}", "model.max_length=32", "model.epochs=2", "model.batch_size=8",
             "model.device=cpu"]
    store = f"sqlite:///{tmp_path / 'ddp.db'}"
    done = torchrun("train", str(TRANSFORMER), *tiny_overrides(store, *extra, "output_dir=ddp-outputs"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert done.stdout.count("repeat 0 fold 0: macro-F1") == 1  # only rank 0 prints, logs and writes

    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs if r is not parent} == {parent.info.run_id}
    assert [v.run_id for v in client.search_model_versions("name='speechacts-classifier'")] == [parent.info.run_id]
    assert [p.name for p in (project / "ddp-outputs").iterdir()] == [parent.info.run_id]

    one_store = f"sqlite:///{tmp_path / 'one.db'}"
    single = train.run(load_config(TRANSFORMER, tiny_overrides(one_store, *extra)))
    one = mlflow.MlflowClient(one_store).get_run(single.run_id)
    assert parent.data.tags["folds_digest"] == one.data.tags["folds_digest"]
    curves, one_curves = fold_curves(store, parent.info.run_id), fold_curves(one_store, single.run_id)
    assert curves.keys() == one_curves.keys() and len(curves) == 2 * len(CURVES) * 2
    for key, value in one_curves.items():
        if key[1] == "optimizer_steps":  # batch_size is the batch of one step over all processes
            assert curves[key] == value, key
        else:  # and the loss is not scaled by the number of processes
            assert curves[key] == pytest.approx(value, abs=TOLERANCE["loss"]), key
    oof = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, tracking_uri=store,
                                                          artifact_path="predictions/oof_predictions.csv"))
    both = oof.merge(pd.DataFrame(single.oof), on="id", suffixes=("", "_one"))
    assert len(both) == len(oof) == len(single.oof)
    columns = [c for c in oof.columns if c.startswith("p_")]
    difference = abs(both[columns].to_numpy() - both[[f"{c}_one" for c in columns]].to_numpy()).max()
    assert difference < TOLERANCE["probability"]
    for key, (value, _, _) in single.cv.items():
        assert parent.data.metrics[f"cv_{key}"] == pytest.approx(value, abs=TOLERANCE["score"]), key
    print(f"largest differences: probability {difference:.2g}, loss "
          f"{max(abs(curves[k] - v) for k, v in one_curves.items()):.2g}, score "
          f"{max(abs(parent.data.metrics[f'cv_{k}'] - v[0]) for k, v in single.cv.items()):.2g}")


@pytest.mark.parametrize("recipe, overrides, message", [
    ("baseline", [], "model.family=baseline trains in one process; only the transformer trains on several "
                     "(2 were started). Run it without torchrun"),
    ("transformer", ["model.batch_size=15"], "model.batch_size=15 is the batch of one optimiser step, split across "
                                            "the 2 processes, so it must be a multiple of 2"),
])
def test_what_cannot_train_on_several_processes_is_refused(monkeypatch, recipe, overrides, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        distributed.check(load_config(ROOT / "configs" / f"{recipe}.yaml", overrides))


def test_one_process_is_rank_zero(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.is_main() and distributed.world_size() == 1
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main()
