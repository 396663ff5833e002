"""A pretrained encoder fine-tuned with a classification head, trained by transformers' Trainer."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from speechacts.classifier import Classifier
from speechacts.config import TransformerModel
from speechacts.distributed import world_size
from speechacts.errors import ModelError
from speechacts.labels import ID2LABEL, LABEL2ID, LABELS, top_labels
from speechacts.models.hf import (
    at_limit,
    length_batches,
    load_pretrained,
    load_weights,
    pick_device,
    quiet,
    resolve_pretrained,
    warn_if_truncated,
)

WEIGHTS_DIR = "hf"  # model.safetensors, config.json (with id2label/label2id), tokenizer files
MEMBER_DIR = "hf_seed{}"  # weights of the ensemble's member i >= 1 (model.ensemble_seeds), no tokenizer


def class_weights(labels: list[int]) -> np.ndarray:
    """scikit-learn's 'balanced' weights (inverse label frequency) for every label id, 0 for a label absent
    from `labels` (scikit-learn refuses one; no target of it weighs in the loss). With k < 5 labels present
    they are 5/k times the 5-label formula, a constant factor the weighted mean cross-entropy cancels."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.zeros(len(LABELS))
    weights[present] = compute_class_weight("balanced", classes=present, y=np.asarray(labels))
    return weights


def epoch_logger(log_metrics, total_epochs: float):
    """A TrainerCallback that sends per-epoch loss and validation metrics to MLflow and prints a line."""
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        def __init__(self):
            self.train_loss = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.train_loss = logs["loss"]
                if log_metrics:
                    log_metrics({"train_loss": logs["loss"], "optimizer_steps": state.global_step},
                                step=round(state.epoch or 0))
            metrics = {k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_")}
            if metrics:
                if log_metrics:
                    log_metrics({f"val_{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
                                step=round(state.epoch or 0))
                if state.is_world_process_zero:
                    print(f"    epoch {state.epoch:.0f}/{total_epochs:g}: train loss {self.train_loss:.3f}  "
                          f"val loss {metrics.get('loss', float('nan')):.3f}  val macro-F1 "
                          f"{metrics.get('macro_f1', float('nan')):.3f}", flush=True)

    return EpochLogger()


class TransformerClassifier(Classifier):
    family = "transformer"

    def __init__(self, cfg: TransformerModel | None = None, seed: int = 0, model=None, tokenizer=None):
        self.cfg = cfg or TransformerModel()
        self.seed = seed if self.cfg.seed is None else self.cfg.seed
        self.model_ = model
        self.members_ = []  # the other seeds' models of an ensemble (model.ensemble_seeds)
        self.tokenizer_ = tokenizer

    def fit(self, texts: list[str], labels: list[str], contexts: list[str] | None = None, eval_set=None,
            log_metrics=None, groups: list[str | None] | None = None) -> TransformerClassifier:
        """Train `ensemble_seeds` models; with early stopping, on the rows outside an inner validation
        split of whole articles (`groups`), which then replaces eval_set for the per-epoch scores."""
        import datasets
        from datasets import Dataset
        from transformers import AutoTokenizer

        from speechacts import evaluation

        cfg = self.cfg
        quiet()
        datasets.disable_progress_bars()
        path = resolve_pretrained(cfg.pretrained)
        tokenizer = load_pretrained(path, AutoTokenizer)
        with_context = cfg.context != "none"

        def encode(split_texts, split_labels, split_contexts=None):
            """Sentences, or (sentence, context) text pairs, tokenized."""
            columns = {"text": list(split_texts), "label": [LABEL2ID[x] for x in split_labels]}
            if with_context:
                columns["context"] = list(split_contexts or [""] * len(columns["text"]))
            data = Dataset.from_dict(columns)
            return data.map(lambda b: tokenizer(b["text"], b["context"] if with_context else None, truncation=True,
                                                max_length=cfg.max_length),
                            batched=True, remove_columns=["text", "context"] if with_context else ["text"])

        if cfg.early_stopping_patience:
            fit_rows, val_rows = evaluation.inner_split(list(labels), groups, cfg.validation_fraction, self.seed)

            def pick(values, index):
                return None if values is None else [values[i] for i in index]

            eval_set = (pick(texts, val_rows), pick(labels, val_rows), pick(contexts, val_rows))
            texts, labels, contexts = pick(texts, fit_rows), pick(labels, fit_rows), pick(contexts, fit_rows)
        train_data = encode(texts, labels, contexts)
        eval_data = encode(*eval_set) if eval_set else None
        models = [self._train_one(path, tokenizer, train_data, eval_data, [LABEL2ID[x] for x in labels], seed,
                                  log_metrics if seed == self.seed else None)
                  for seed in range(self.seed, self.seed + cfg.ensemble_seeds)]
        self.model_, self.members_ = models[0], models[1:]
        self.tokenizer_ = tokenizer
        return self

    def _train_one(self, path: str, tokenizer, train_data, eval_data, train_ids: list[int], seed: int, log_metrics):
        """One model fine-tuned from the pretrained weights with this seed; the best epoch's weights
        where early stopping is on."""
        import torch
        from transformers import (
            AutoModelForSequenceClassification,
            DataCollatorWithPadding,
            EarlyStoppingCallback,
            PrinterCallback,
            Trainer,
            TrainingArguments,
            set_seed,
        )

        from speechacts.evaluation import scores

        cfg = self.cfg
        set_seed(seed)
        model = load_weights(path, AutoModelForSequenceClassification, num_labels=len(LABELS),
                             id2label=ID2LABEL, label2id=LABEL2ID, ignore_mismatched_sizes=True)
        if cfg.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad = False
        weights = torch.tensor(class_weights(train_ids), dtype=torch.float32) if cfg.class_weighting else None

        def loss_fn(outputs, targets, num_items_in_batch=None):
            logits = outputs["logits"]
            return torch.nn.functional.cross_entropy(logits, targets.to(logits.device),
                                                     weight=None if weights is None else weights.to(logits.device))

        def compute_metrics(prediction):
            return scores([LABELS[i] for i in prediction.label_ids], top_labels(np.asarray(prediction.predictions)))

        device = pick_device(cfg.device)
        processes = world_size()
        stopping = bool(cfg.early_stopping_patience)
        with tempfile.TemporaryDirectory() as scratch:
            # Under torchrun the Trainer trains on every process (DDP: gloo on CPU, NCCL on GPU).
            # split_batches: each process takes its share of the same batches, so an optimiser step
            # sees batch_size examples and the schedule is the single-process one. loss_fn is a mean
            # over its share, and DDP averages the gradients: the Trainer must not scale the loss by
            # the number of processes (average_tokens_across_devices, meant for summed losses). Every
            # parameter that trains takes part in the forward pass: DDP need not look for unused ones.
            # warmup_steps takes the ratio: in transformers 5 a float in [0, 1) is a share of the total
            # steps (TrainingArguments docs; warmup_ratio is deprecated there, huggingface/transformers#41326).
            # Early stopping saves each epoch (in scratch) so that the best one is loaded at the end.
            args = TrainingArguments(
                output_dir=str(cfg.checkpoint_dir) if cfg.save_checkpoints else scratch,
                learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
                per_device_train_batch_size=cfg.batch_size,
                per_device_eval_batch_size=-(-max(64, cfg.batch_size) // processes) * processes,
                accelerator_config={"split_batches": True}, average_tokens_across_devices=False,
                ddp_find_unused_parameters=False,
                # not a slip: since transformers 5, warmup_steps below 1 is a fraction of the training
                # steps (TrainingArguments.get_warmup_steps), and warmup_ratio is deprecated (PR #41326)
                warmup_steps=cfg.warmup_ratio, lr_scheduler_type=cfg.lr_scheduler_type,
                weight_decay=cfg.weight_decay,
                eval_strategy="epoch" if eval_data is not None else "no", logging_strategy="epoch",
                save_strategy="epoch" if cfg.save_checkpoints or stopping else "no",
                save_total_limit=1 if stopping and not cfg.save_checkpoints else None,
                load_best_model_at_end=stopping, metric_for_best_model="macro_f1" if stopping else None,
                greater_is_better=True if stopping else None, report_to="none",
                train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
                seed=seed, data_seed=seed, use_cpu=device == "cpu", disable_tqdm=True,
                dataloader_num_workers=0)
            callbacks = [epoch_logger(log_metrics, cfg.epochs)]
            if stopping:
                callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
            trainer = Trainer(model=model, args=args, train_dataset=train_data, eval_dataset=eval_data,
                              data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                              compute_loss_func=loss_fn,
                              compute_metrics=compute_metrics if eval_data is not None else None,
                              callbacks=callbacks)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            if stopping:
                best = max((e for e in trainer.state.log_history if "eval_macro_f1" in e),
                           key=lambda e: e["eval_macro_f1"])
                print(f"    early stopping: best epoch {best['epoch']:.0f} of {trainer.state.epoch:.0f} trained "
                      f"(validation macro-F1 {best['eval_macro_f1']:.3f})", flush=True)
                if log_metrics:
                    log_metrics({"best_epoch": best["epoch"], "epochs_trained": trainer.state.epoch})
        return trainer.model.to("cpu" if device == "cpu" else device).eval()

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        """The mean of the ensemble members' softmax probabilities (one member: its own)."""
        import torch

        if self.model_ is None:
            raise ModelError("the transformer classifier is not fitted; call fit() or load a saved model")
        texts = list(texts)
        models = [self.model_, *self.members_]
        device = next(self.model_.parameters()).device
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        candidates = []
        pairs = list(contexts or [""] * len(texts)) if self.context != "none" else None
        with torch.inference_mode():
            batches = length_batches(self.tokenizer_, texts, self.cfg.predict_batch_size, self.cfg.max_length, pairs)
            for index, batch in batches:
                candidates += at_limit(index, batch, self.cfg.max_length)
                batch = batch.to(device)
                for model in models:
                    out[index] += torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy()
        if pairs is None:  # with a context, the context is cut first; the sentence rarely is
            warn_if_truncated(self.tokenizer_, texts, self.cfg.max_length, candidates)
        return out / len(models)

    def _save(self, path: Path) -> None:
        self.model_.save_pretrained(path / WEIGHTS_DIR, safe_serialization=True)
        self.tokenizer_.save_pretrained(path / WEIGHTS_DIR)
        for i, member in enumerate(self.members_, 1):
            member.save_pretrained(path / MEMBER_DIR.format(i), safe_serialization=True)

    def _export(self, path: Path, check) -> None:
        if self.cfg.ensemble_seeds > 1:  # one ONNX graph would score the first member alone: torch serves it
            print(f"    ONNX export skipped: model.ensemble_seeds={self.cfg.ensemble_seeds} (an ensemble runs on "
                  "torch)", flush=True)
            return
        if self.cfg.export != "none":
            from speechacts.models import onnx

            onnx.export_checked(self, self.model_, self.tokenizer_, path, "logits", check)

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> TransformerClassifier:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from speechacts.classifier import saved_model_config

        quiet()
        cfg = saved_model_config(path, meta, TransformerModel)
        weights = str(path / WEIGHTS_DIR)
        if not Path(weights).is_dir():
            raise ModelError(f"{weights}: missing; the model directory is incomplete, retrain it")
        # on cuda where one is present unless the config says cpu; a model trained with device=cuda
        # still loads, on the cpu, on a machine without one
        import torch

        device = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
        model = load_weights(weights, AutoModelForSequenceClassification).to(device).eval()
        if model.config.id2label != ID2LABEL:
            raise ModelError(f"{weights}: id2label {model.config.id2label} differs from this speechacts' {ID2LABEL}")
        loaded = cls(cfg, model=model, tokenizer=load_pretrained(weights, AutoTokenizer))
        for i in range(1, cfg.ensemble_seeds):
            member = path / MEMBER_DIR.format(i)
            if not member.is_dir():
                raise ModelError(f"{member}: missing; model.ensemble_seeds={cfg.ensemble_seeds} but the model "
                                 f"directory holds fewer members, retrain it")
            loaded.members_.append(load_weights(str(member), AutoModelForSequenceClassification).to(device).eval())
        return loaded
