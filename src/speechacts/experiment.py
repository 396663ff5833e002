"""The experiment job: run several recipes into one MLflow experiment, crown the best, compare.

An experiment file (experiments/*.yaml) says in its header what question it answers and lists
the recipes, each with its own overrides. All configs are validated before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from speechacts.config import AnyPath, Config, ConfigError, Strict, load_config, read_yaml, validate

CHAMPION = "champion"


class RunSpec(Strict):
    recipe: AnyPath
    name: str | None = None  # default: the recipe's name
    overrides: list[str] = []


class ExperimentSpec(Strict):
    name: str
    experiment: str  # the MLflow experiment the runs land in
    overrides: list[str] = []  # applied to every run, before the run's own
    runs: list[RunSpec] = Field(min_length=1)
    champion_alias: str | None = CHAMPION  # alias given to the best run's registered model


def load_spec(path: str | Path) -> ExperimentSpec:
    tree = read_yaml(path)
    if "space" in tree and "runs" not in tree:
        raise ConfigError(f"{path}: a sweep file (it declares a space:), not an experiment; run `speechacts sweep "
                          f"{path}`")
    return validate(tree, str(path), ExperimentSpec, "experiment")


def configs(spec: ExperimentSpec, overrides: list[str]) -> list[Config]:
    """Every run's resolved config, validated up front."""
    out = []
    for run in spec.runs:
        extra = [f"tracking.experiment={spec.experiment}", *spec.overrides, *run.overrides, *overrides]
        if run.name:
            extra.append(f"name={run.name}")
        out.append(load_config(run.recipe, extra))
    names = [cfg.name for cfg in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment {spec.name}: run names must differ, got {names}; "
                          "give each run a distinct `name:`")
    return out


def run(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> list:
    """Train every recipe of the experiment, alias the best registered model, print the comparison."""
    from speechacts import compare, distributed, store, tracking, train

    spec = load_spec(path)
    cfgs = configs(spec, list(overrides))
    print(f"experiment {spec.name}: {len(cfgs)} run(s) into MLflow experiment {spec.experiment!r}", flush=True)
    results = []
    for i, cfg in enumerate(cfgs, 1):
        print(f"\n[{i}/{len(cfgs)}] {cfg.name}", flush=True)
        results.append(train.run(cfg, extra_tags={"experiment_file": str(path), "experiment_spec": spec.name}))
    if not distributed.is_main():  # under torchrun: rank 0 crowns and compares
        return results
    best = max(results, key=lambda r: r.headline[0])
    registered = cfgs[results.index(best)].tracking.registered_model
    if spec.champion_alias and registered and best.model_version:
        tracking.set_alias(registered, spec.champion_alias, best.model_version)
        print(f"\n{best.name} has the best out-of-fold article macro-F1 ({best.headline[0]:.3f}): "
              f"models:/{registered}@{spec.champion_alias} is now version {best.model_version}")
    compare.run(spec.experiment, tracking_uri=store.tracking_uri(configured=cfgs[0].tracking.uri))
    return results
