"""The sweep job: search a recipe's settings with Optuna; every trial is one train job.

The sweep file and its space of settings: search_space.py. Optuna's TPE sampler proposes
settings. The median pruner stops a trial whose validation macro-F1 after an epoch
(transformer), or whose fold score (families without epochs), is below the median of earlier
trials at the same fold and epoch. Trials are scored by the grouped cross-validated article
macro-F1 (`TrainResult.headline`). The study lives in an RDB store (default: optuna.db beside
the MLflow store), so --workers processes, or machines given one --storage URL, share it. In
MLflow a sweep run holds the space and the best result; each trial is a train job's parent run,
nested under it, registering nothing. The best trial's settings are written as a recipe,
<output_dir>/sweeps/<name>/best.yaml, that `speechacts train` runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from speechacts.config import Config, load_config
from speechacts.errors import ConfigError, SpeechactsError, SweepError
from speechacts.search_space import (
    SweepSpec,
    assignments,
    check_space,
    decode,
    load_spec,
    shown,
    suggest,
    trial_config,
)

STEPS_PER_FOLD = 1000  # a trial reports its progress at step fold * STEPS_PER_FOLD + epoch


@dataclass
class SweepResult:
    name: str
    storage: str
    run_id: str  # the MLflow sweep run
    best_trial: int
    best_value: float
    metric: str
    best_recipe: Path
    states: dict[str, int]  # trials of the study by state


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: nothing to hide
        return url


def default_storage(cfg: Config) -> str:
    """optuna.db beside a local MLflow store (sqlite:///…/mlflow.db), else in the working directory."""
    from speechacts import store

    db = store.sqlite_file(store.tracking_uri(configured=cfg.tracking.uri))
    folder = db.parent if db is not None else Path(".")
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def open_storage(url: str):
    import optuna

    # SQLite serialises writers: let a worker wait for another's transaction instead of failing
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:
        raise SweepError(f"study store {redact(url)}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}; "
                         "--storage takes a SQLAlchemy URL such as sqlite:///optuna.db or "
                         "postgresql://user@host/db") from None


def open_study(spec: SweepSpec, url: str, sampler=None, pruner=None):
    """The sweep's study, created on first use; refused if it was made with another space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=open_storage(url), direction="maximize",
                                load_if_exists=True, sampler=sampler, pruner=pruner)
    space = json.dumps({key: param.model_dump() for key, param in spec.space.items()}, sort_keys=True)
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", space)
    elif stored != space:
        raise SweepError(f"study {spec.name!r} in {redact(url)} was made with another space: {stored}; give the "
                         "sweep another name:, or delete the study (optuna delete-study --study-name "
                         f"{spec.name} --storage URL)")
    return study


def reporter(trial):
    """train.run's progress callback: report to the trial, and stop the job when the pruner says so."""
    import optuna

    from speechacts import tracking

    class Pruned(tracking.Stopped, optuna.TrialPruned):
        """Ends the MLflow runs KILLED and the Optuna trial PRUNED."""

    def report(fold: int, epoch: int, value: float) -> None:
        trial.report(value, fold * STEPS_PER_FOLD + epoch)
        if trial.should_prune():
            print(f"  trial {trial.number} pruned after fold {fold} epoch {epoch} ({value:.3f})", flush=True)
            raise Pruned()

    return report


def objective(spec: SweepSpec, overrides: list[str], parent_run_id: str):
    from optuna.trial import TrialState

    from speechacts import train

    def run_trial(trial) -> float:
        values = {key: suggest(trial, key, param) for key, param in spec.space.items()}
        for done in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if done.params == trial.params:  # TPE may propose a point again; training it again tells nothing
                print(f"\n[trial {trial.number}] the settings of trial {done.number} again: its score is reused",
                      flush=True)
                trial.set_user_attr("same_as", done.number)
                for key in ("mlflow_run_id", "metric"):
                    trial.set_user_attr(key, done.user_attrs.get(key))
                return done.value
        print(f"\n[trial {trial.number}] {' '.join(assignments(values))}", flush=True)
        cfg = trial_config(spec, values, overrides, f"{spec.name}-{trial.number:03d}")
        result = train.run(cfg, extra_tags={"mlflow.parentRunId": parent_run_id, "sweep": spec.name,
                                            "sweep_trial": str(trial.number)}, progress=reporter(trial))
        trial.set_user_attr("mlflow_run_id", result.run_id)
        trial.set_user_attr("metric", result.headline_metric)
        return result.headline[0]

    return run_trial


def work(path: str, overrides: list[str], url: str, trials: int, worker: int, parent_run_id: str) -> None:
    """One worker: take `trials` trials of the shared study, one after another."""
    import optuna

    from speechacts import tracking

    spec = load_spec(path)
    tracking.connect(trial_config(spec, {}, overrides, spec.name).tracking)
    sampler = optuna.samplers.TPESampler(n_startup_trials=spec.startup_trials, constant_liar=True,
                                         seed=None if spec.seed is None else spec.seed + worker)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials) if spec.pruner == "median"
              else optuna.pruners.NopPruner())
    study = open_study(spec, url, sampler, pruner)
    study.optimize(objective(spec, overrides, parent_run_id), n_trials=trials)


def worker_main(*args) -> None:
    """A worker process: a user's mistake is one error line and exit status 2, as in the CLI."""
    try:
        work(*args)
    except SpeechactsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def run_workers(path: str, overrides: list[str], url: str, trials: int, workers: int, parent_run_id: str) -> None:
    """Share `trials` among the workers: one in this process, else one spawned process each."""
    import multiprocessing

    shares = [n for n in (trials // workers + (i < trials % workers) for i in range(workers)) if n]
    if len(shares) == 1:
        work(path, overrides, url, shares[0], 0, parent_run_id)
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch or MLflow state is shared
    processes = [context.Process(target=worker_main, args=(path, overrides, url, n, i, parent_run_id),
                                 name=f"sweep-worker-{i}") for i, n in enumerate(shares)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [f"worker {i}: exit status {p.exitcode}" for i, p in enumerate(processes) if p.exitcode]
    if failed:
        raise SweepError(f"{len(failed)} of {len(processes)} sweep workers failed ({', '.join(failed)}); "
                         "their errors are above")


def best_path(cfg: Config, spec: SweepSpec) -> Path:
    return Path(cfg.output_dir) / "sweeps" / spec.name / "best.yaml"


def write_best(spec: SweepSpec, path: str | Path, overrides: list[str], study, out: Path) -> Path:
    """The best trial's settings applied to the recipe, as a recipe file that `speechacts train` runs."""
    best = study.best_trial
    values = {key: decode(spec.space[key], best.params[key]) for key in spec.space}
    cfg = load_config(spec.recipe, [*spec.overrides, *overrides, *assignments(values), f"name={spec.name}-best"])
    out.parent.mkdir(parents=True, exist_ok=True)
    run_id = best.user_attrs.get("mlflow_run_id")
    out.write_text(f"# The best trial of sweep {spec.name} ({path}): trial {best.number}, "
                   f"{best.user_attrs.get('metric', 'score')} {best.value:.4f}\n"
                   f"# (MLflow run {run_id} in experiment {spec.experiment}). Settings found: "
                   f"{' '.join(assignments(values))}\n"
                   f"# Train and register it: speechacts train {out}\n" + cfg.to_yaml(), encoding="utf-8")
    return out


def run(path: str | Path, overrides: list[str] | tuple[str, ...] = (), workers: int = 1, storage: str | None = None,
        trials: int | None = None) -> SweepResult:
    """Run a sweep file's trials on `workers` processes, then write the best recipe."""
    from optuna.trial import TrialState

    from speechacts import distributed, tracking

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise SweepError("speechacts sweep needs Optuna: pip install 'speechacts[sweep]'") from None
    if distributed.world_size() > 1:
        raise ConfigError("speechacts sweep starts its own worker processes (--workers); run it without torchrun")
    if workers < 1 or (trials is not None and trials < 1):
        raise ConfigError(f"--workers and --trials must be at least 1, got {workers} and {trials}")
    path, overrides = str(path), list(overrides)
    spec = load_spec(path)
    base = check_space(path, spec, overrides)
    url = storage or default_storage(base)
    study = open_study(spec, url)
    experiment_id = tracking.connect(base.tracking)
    parent = tracking.open_run(experiment_id, f"sweep:{spec.name}", run_id=study.user_attrs.get("mlflow_run_id"),
                               tags={"sweep": spec.name, "recipe": str(spec.recipe), "optuna_study": spec.name,
                                     "optuna_storage": redact(url), "git_commit": tracking.git_commit()})
    study.set_user_attr("mlflow_run_id", parent)
    tracking.log_to(parent, params={f"space.{key}": shown(param) for key, param in spec.space.items()},
                    texts={"sweep.yaml": Path(path).read_text(encoding="utf-8")})
    n = trials or spec.trials
    print(f"sweep {spec.name}: {n} trial(s) of {spec.recipe} on {min(workers, n)} worker(s); study in "
          f"{redact(url)}, runs in MLflow experiment {spec.experiment!r} under run {parent}", flush=True)
    try:
        run_workers(path, overrides, url, n, workers, parent)
        study = open_study(spec, url)
        states = {state.name: sum(t.state == state for t in study.trials) for state in TrialState}
        if not states["COMPLETE"]:
            raise SweepError(f"sweep {spec.name}: no trial completed ({states['PRUNED']} pruned, "
                             f"{states['FAIL']} failed); widen the space or set pruner: none")
        best_recipe = write_best(spec, path, overrides, study, best_path(base, spec))
    except BaseException:
        tracking.close_run(parent, "FAILED")
        raise
    best = study.best_trial
    metric = best.user_attrs.get("metric", "score")
    tracking.log_to(parent, metrics={f"best_{metric}": best.value, "trials_complete": states["COMPLETE"],
                                     "trials_pruned": states["PRUNED"]},
                    tags={"best_trial": str(best.number), "best_run_id": str(best.user_attrs.get("mlflow_run_id"))},
                    texts={"best.yaml": best_recipe.read_text(encoding="utf-8")})
    tracking.close_run(parent)
    result = SweepResult(spec.name, redact(url), parent, best.number, best.value, metric, best_recipe,
                         {k: v for k, v in states.items() if v})
    print_summary(spec, study, result)
    return result


def print_summary(spec: SweepSpec, study, result: SweepResult) -> None:
    from optuna.trial import TrialState

    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    print(f"\nsweep {spec.name}: " + ", ".join(f"{n} {state.lower()}" for state, n in result.states.items()))
    print(f"  {'trial':>5}  {result.metric:>20}  settings")
    for t in done[:10]:
        print(f"  {t.number:>5}  {t.value:>20.4f}  "
              f"{' '.join(assignments({k: decode(spec.space[k], v) for k, v in t.params.items()}))}")
    print(f"best: trial {result.best_trial} ({result.metric} {result.best_value:.4f}), written to "
          f"{result.best_recipe}\n  train and register it: speechacts train {result.best_recipe}")
