"""Task types as objects (MTEB's abstract task types are the model): what a dataset of the type
must provide, how episodes are sampled from it and encoded into batches, what identifies an
example's content, how a model's outputs on a query set become predictions, which metric scores
them by default and the default episode shape.

A new task type registers a `TaskType` here or through the ``metaft.task_types`` entry point; its
datasets name it in `DatasetSpec.task_type`. Sampler, encoder and model side are named as
``module:object`` and imported on first use, so listing task types stays free of torch and this
package never imports ``algorithms/``: the model side (features, head, loss) is a
`metaft.algorithms.heads.ModelSide`, one of the built-in three or the plugin's own. Label
validation (``labels``) and how `suite tasks show` prints an example (``render``) are here too, so a
new task type is one file.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from metaft.suite.foundation.registry import Registry

from .metrics import decode_spans

# (model, encoded query batches, label names) -> (predictions, references); no torch import here, so
# that listing datasets and task types (`suite tasks`, the `suite tune` driver) stays light
Decoder = Callable[[Any, Sequence[dict], Sequence[str]], tuple[list, list]]


@dataclass(frozen=True)
class TaskType:
    """One kind of task.

    - ``decode(model, batches, label_names)`` runs the model on encoded query batches and returns
      (predictions, references) in the form its metrics consume;
    - ``sampler`` names ``f(loaded_split, shape, rng, allowed_rows) -> (classes, label_names,
      support, query)``;
    - ``encoder`` names ``f(tokenizer, examples, num_labels) -> batch`` (``tokenizer`` is the
      suite's `EpisodeEncoder`: `cached`, `base_batch` and `pad` are its helpers);
    - ``content_columns``: the text that identifies an example (de-duplication, leakage checks):
      the columns' values joined by newlines, a list of words joined by spaces;
    - ``shape``: the default episode (ways, shots, queries);
    - ``model_side`` names the `ModelSide` (``metaft.algorithms.heads``) the model uses for it;
    - ``labels``: the canonical column of label indices (one per example, or a list per example),
      checked against the dataset's label names when a split is loaded (None: no label indices);
    - ``render(example, label_names)``: one line for `suite tasks show`."""

    name: str
    columns: tuple[str, ...]  # canonical columns a dataset of this type must map
    default_metric: str
    decode: Decoder
    sampler: str
    encoder: str
    content_columns: tuple[str, ...]
    shape: tuple[int, int, int]
    description: str = ""
    model_side: str = "metaft.algorithms.heads:SEQUENCE_LABELS"
    labels: str | None = None
    render: Callable[[dict, Sequence[str]], str] | None = None

    def resolve(self, part: str) -> Callable:
        """The ``sampler`` or ``encoder`` function, imported on first use."""
        module, _, name = getattr(self, part).partition(":")
        return getattr(importlib.import_module(module), name)

    def content_text(self, example: dict) -> str:
        values = (example[c] for c in self.content_columns)
        return "\n".join(" ".join(v) if isinstance(v, (list, tuple)) else str(v) for v in values)

    def show(self, example: dict, label_names: Sequence[str]) -> str:
        """One line for `suite tasks show`: ``render``, else the example's content shortened."""
        import textwrap

        if self.render is not None:
            return self.render(example, label_names)
        return textwrap.shorten(self.content_text(example).replace("\n", " | "), 110) + f"  ({example.get('id', '')})"


TASK_TYPES: Registry[TaskType] = Registry("task type", base=TaskType, group="metaft.task_types",
                                          legacy_groups=("suite.task_types",), builtins=("metaft.tasks.task_types",))


def register_task_type(task_type: TaskType) -> TaskType:
    return TASK_TYPES.register(task_type.name, task_type)


def get_task_type(name: str) -> TaskType:
    return TASK_TYPES.get(name)


def _labels(model, batches, label_names):
    predictions, references = [], []
    for b in batches:
        predictions += model(b).argmax(-1).tolist()
        references += b["labels"].tolist()
    return predictions, references


def _tags(model, batches, label_names):
    """Tag sequences over the first sub-token of each word (the others carry IGNORE_INDEX)."""
    from .tokenize import IGNORE_INDEX

    predictions, references = [], []
    for b in batches:
        pred, labels = model(b).argmax(-1).cpu(), b["labels"].cpu()
        for p_row, l_row in zip(pred, labels):
            keep = l_row != IGNORE_INDEX
            references.append([label_names[i] for i in l_row[keep].tolist()])
            predictions.append([label_names[i] for i in p_row[keep].tolist()])
    return predictions, references


def _spans(model, batches, label_names):
    """The best answer text per question from its context windows' start/end logits."""
    predictions, references = [], []
    for b in batches:
        start, end = model(b)
        predictions += decode_spans(start.float().cpu().numpy(), end.float().cpu().numpy(),
                                    b["example_index"].tolist(), b["offsets"], b["contexts"])
        references += b["answers"]
    return predictions, references


def _render_label(ex: dict, label_names: Sequence[str]) -> str:
    import textwrap

    return f"[{label_names[ex['label']]}] {textwrap.shorten(ex['text'].replace(chr(10), ' '), 90)}  ({ex['id']})"


def _render_tags(ex: dict, label_names: Sequence[str]) -> str:
    import textwrap

    words = [w if t == 0 else f"[{w}]{label_names[t]}" for w, t in zip(ex["tokens"], ex["tags"])]
    return textwrap.shorten(" ".join(words), 110) + f"  ({ex['id']})"


def _render_answer(ex: dict, label_names: Sequence[str]) -> str:
    import textwrap

    ans = " | ".join(dict.fromkeys(ex["answers"]["text"]))
    return f"Q: {textwrap.shorten(ex['question'], 70)}  A: {textwrap.shorten(ans, 40)}  ({ex.get('title', '')})"


# the built-ins, importable without the registry (a plugin type can start from one with dataclasses.replace)
_EPISODES, _TOKENIZE, _HEADS = "metaft.tasks.episodes", "metaft.tasks.tokenize", "metaft.algorithms.heads"
CLASSIFICATION = register_task_type(TaskType("classification", ("text", "label"), "accuracy", _labels,
                            f"{_EPISODES}:sample_classification", f"{_TOKENIZE}:encode_classification",
                            ("text",), (5, 8, 16), "one label per text; predictions are class indices",
                            f"{_HEADS}:SEQUENCE_LABELS", "label", _render_label))
NER = register_task_type(TaskType("ner", ("tokens", "tags"), "entity_f1", _tags,
                            f"{_EPISODES}:sample_ner", f"{_TOKENIZE}:encode_ner",
                            ("tokens",), (3, 5, 10), "BIO tags per word; predictions are tag sequences",
                            f"{_HEADS}:TOKEN_LABELS", "tags", _render_tags))
QA = register_task_type(TaskType("qa", ("context", "question", "answers"), "squad_f1", _spans,
                            f"{_EPISODES}:sample_qa", f"{_TOKENIZE}:encode_qa",
                            ("question", "context"), (1, 16, 32), "extractive QA; predictions are answer texts",
                            f"{_HEADS}:SPANS", None, _render_answer))
