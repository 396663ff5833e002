"""Typed run configuration: YAML file + dotted overrides -> one validated `Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from speechacts.errors import ConfigError
from speechacts.models import FAMILIES

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class Strict(BaseModel):
    """A config section: unknown keys and wrong types are refused (strict=True); a number or a boolean
    written as a string ("5", "yes") is a wrong type, an integer where a float is asked is not. Only
    paths and pairs are converted (from strings, from lists: AnyPath and IntPair below)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


AnyPath = Annotated[Path, Field(strict=False)]  # YAML gives paths as strings
IntPair = Annotated[tuple[StrictInt, StrictInt], Field(strict=False)]  # and pairs as lists


class DataConfig(Strict):
    train: list[AnyPath] = [Path("data/authored.csv"), Path("data/contrast.csv")]  # isolated sentences
    test: list[AnyPath] = [Path("data/seed_labels.csv")]
    seeds_dir: AnyPath = Path("seeds")
    excluded: AnyPath = Path("data/seed_excluded.csv")
    articles_dir: AnyPath | None = Path("data/articles")  # authored articles (trained on); null: none
    sources_dir: AnyPath = Path("data/sources")  # fingerprints of the sources the articles draw on
    second_reading_dir: AnyPath | None = Path("data/second_reading")  # blind second labels; checked where present
    topics: list[str] | None = None  # keep only these topics of the training rows
    include_hard: bool = True


class EvaluationConfig(Strict):
    folds: int = Field(5, ge=2)
    repeats: int = Field(1, ge=1)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


# what the Hugging Face families export beside their weights at save (see models/onnx.py): nothing,
# ONNX (fp32), or ONNX and a dynamically quantized int8 copy; each is kept only if it agrees with torch
EXPORTS = ("none", "onnx", "onnx-int8")
Export = Literal["none", "onnx", "onnx-int8"]


class ModelCommon(Strict):
    """What every family shares: how its probabilities are adjusted after scoring."""

    # auto: the prior method with the best out-of-fold article macro-F1 (see calibration.py)
    prior: Literal["auto", "none", "articles", "em"] = "auto"
    # what the model reads beside the sentence (see context.py)
    context: Literal["none", "previous", "headline+previous"] = "none"


class BaselineModel(ModelCommon):
    family: Literal["baseline"] = "baseline"
    word_ngram_range: IntPair = (1, 2)
    char_ngram_range: IntPair = (2, 5)
    hash_bits: int = Field(16, ge=10, le=22)  # 2**bits hashed features per analyzer
    sublinear_tf: bool = True
    C: float = Field(10.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    solver: Literal["newton-cg", "lbfgs", "saga"] = "newton-cg"  # newton-cg: 10x faster here
    max_iter: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> BaselineModel:
        for key in ("word_ngram_range", "char_ngram_range"):
            low, high = getattr(self, key)
            if not 1 <= low <= high:
                raise ValueError(f"{key} must be [low, high] with 1 <= low <= high, got {[low, high]}")
        return self


class TransformerModel(ModelCommon):
    family: Literal["transformer"] = "transformer"
    pretrained: str = PACKAGED_MINILM  # the packaged MiniLM, a local directory, or a hub id
    learning_rate: float = Field(1e-4, gt=0)
    epochs: float = Field(4, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(64, ge=8)  # 99% of the corpus is under 62 tokens; longer texts are cut, with a warning
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    # transformers' schedule after the warmup (its SchedulerType names); linear: to 0 at the last step
    lr_scheduler_type: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                               "constant_with_warmup", "inverse_sqrt"] = "linear"
    weight_decay: float = Field(0.01, ge=0)
    class_weighting: bool = True
    freeze_embeddings: bool = True  # the word-embedding matrix is half of MiniLM; freezing it halves step time
    group_by_length: bool = True  # batches of similar length: less padding computed
    predict_batch_size: int = Field(64, ge=1)
    save_checkpoints: bool = False  # True keeps per-epoch checkpoints (with optimizer state) in checkpoint_dir
    checkpoint_dir: AnyPath = Path("outputs/checkpoints")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    export: Export = "onnx-int8"
    # the seed of the model's initialisation and data order; null: the run's `seed`, which also picks
    # the folds. Set it to vary the model alone on identical folds.
    seed: int | None = None
    # null: train `epochs` epochs. n: hold out validation_fraction of the training articles (whole
    # articles), evaluate every epoch, stop after n epochs without a better validation macro-F1 and
    # keep the best epoch (up to `epochs`). The final model holds out the same share.
    early_stopping_patience: int | None = Field(None, ge=1)
    validation_fraction: float = Field(0.15, gt=0, le=0.5)
    ensemble_seeds: int = Field(1, ge=1, le=10)  # n models, seeds seed..seed+n-1, probabilities averaged


class EmbeddingsModel(ModelCommon):
    family: Literal["embeddings"] = "embeddings"
    pretrained: str = PACKAGED_MINILM
    max_length: int = Field(128, ge=8)
    batch_size: int = Field(64, ge=1)
    C: float = Field(10.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(2000, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    export: Export = "onnx-int8"


ModelConfig = Annotated[
    BaselineModel | TransformerModel | EmbeddingsModel, Field(discriminator="family")
]


class TrackingConfig(Strict):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the cwd
    experiment: str = "speechacts"
    registered_model: str | None = "speechacts-classifier"  # null: log the model, register nothing


class Config(Strict):
    name: str
    seed: int = 13
    data: DataConfig = DataConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    model: ModelConfig
    tracking: TrackingConfig = TrackingConfig()
    output_dir: AnyPath = Path("outputs")

    def flat(self) -> dict[str, Any]:
        """The config as {dotted.key: value}, for MLflow params."""
        return flatten(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted.key: leaf}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, its `name` defaulting to the file's stem, or raise ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top, got {type(tree).__name__}")
    tree.setdefault("name", path.stem)
    return tree


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `dotted.key=value` (value parsed as YAML) in a copy of tree."""
    tree = yaml.safe_load(yaml.safe_dump(tree))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. training.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem}); quote it to give a "
                              f"string, e.g. {key}='{raw}'") from None
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[leaf] = value
    return tree


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe, apply overrides, validate once; errors name the file and dotted key."""
    path = Path(path)
    tree = apply_overrides(read_yaml(path), list(overrides))
    return validate(tree, origin=str(path) + (f" (overrides: {' '.join(overrides)})" if overrides else ""))


def validate(tree: dict[str, Any], origin: str, schema: type[Strict] = Config, what: str = "config",
             explain=None, one_line: bool = False):
    """The tree as a schema (a run config by default), or a ConfigError naming origin and each wrong
    dotted key (as `explain` words it: describe by default), one a line or all on one line."""
    try:
        return schema.model_validate(tree)
    except ValidationError as exc:
        problems = [(explain or describe)(err) for err in exc.errors()]
        shown = ": " + "; ".join(problems) if one_line else "\n  " + "\n  ".join(problems)
        raise ConfigError(f"{origin}: invalid {what}{shown}") from None


def describe(err: dict[str, Any]) -> str:
    """One pydantic error -> 'dotted.key: what is wrong'."""
    loc = [str(part) for part in err["loc"]]
    if len(loc) > 1 and loc[0] == "model" and loc[1] in FAMILIES:
        loc.pop(1)  # the discriminated union adds the family as a path element
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: missing required key"
    if kind == "union_tag_not_found":
        return f"{key}.family: missing required key; expected one of {', '.join(FAMILIES)}"
    if kind == "union_tag_invalid":
        return f"{key}.family: unknown family {err['input'].get('family')!r}; expected one of {', '.join(FAMILIES)}"
    if kind == "model_attributes_type":
        return f"{key}: expected a section of keys, got {err['input']!r}"
    return f"{key}: {err['msg']} (got {err['input']!r})"
