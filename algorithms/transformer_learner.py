"""A pretrained encoder (BERT, RoBERTa, GPT-2) with the heads its task types use (their model sides: heads.py).

One encoder is meta-trained across classification, NER and QA episodes, so the model
is an ``AutoModel`` backbone with heads of its own rather than one ``Auto*For*`` class
per task: a sequence-classification head on a pooled sentence vector (``pooling``: the
mean of the tokens, L2-normalised, for encoders trained that way, such as
sentence-transformers' MiniLM; the first token for BERT-style [CLS] models; the last
non-pad token for GPT-2, which reads left to right), a token-classification head on every token, and an
extractive-QA head (start/end logits) whose shape never changes.

Episodes have different numbers of classes, so the classification/NER head is built
per episode in :meth:`begin_episode` from class prototypes of the support set
computed with the current encoder (Proto-MAML, Triantafillou et al. 2020: W = 2c,
b = -|c|^2), or as zeros / small random weights. The prototypes are computed without
gradient (the first-order Proto-MAML variant); the meta-learned parameters are the
encoder and the QA head (:meth:`meta_parameters`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from metaft.suite.foundation.errors import ConfigError

from .heads import IGNORE_INDEX, side_of

HEAD_INITS = ("proto", "zero", "random")
POOLINGS = ("auto", "mean", "mean-normalized", "first", "last")
PRECISIONS = ("fp32", "bf16")
MASKED_LOGIT = -1e4  # finite: a masked class gets no probability and no NaN


def default_pooling(config) -> str:
    """Without a model's own pooling config: last token for left-to-right models, else first."""
    return "last" if getattr(config, "model_type", "") in ("gpt2", "gpt_neo", "gptj", "llama") else "first"


class EpisodicTransformer(nn.Module):
    def __init__(self, backbone: nn.Module, head_init: str = "proto", freeze_embeddings: bool = False,
                 gradient_checkpointing: bool = False, pooling: str = "auto", precision: str = "fp32"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        # bf16: the encoder's forward (and so its backward) runs under autocast; weights, gradients,
        # optimizer state, heads and losses stay fp32, so every algorithm and recipe gets the same
        # mixed precision through this one method
        self.precision = precision
        if head_init not in HEAD_INITS:
            raise ConfigError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {head_init!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.backbone: Any = backbone  # a transformers model (or a PeftModel): its hooks are not nn.Module's
        self.head_init = head_init
        loose: Any = backbone  # a transformers model: config and hooks that nn.Module does not declare
        config = loose.config
        self.hidden_size = int(getattr(config, "hidden_size", None) or config.n_embd)
        self.pooling = default_pooling(config) if pooling == "auto" else pooling
        self.class_mask: torch.Tensor | None = None  # per episode: classes that have a support example
        self.qa_head = nn.Linear(self.hidden_size, 2)
        nn.init.normal_(self.qa_head.weight, std=0.02)
        nn.init.zeros_(self.qa_head.bias)
        self.head: nn.Linear | None = None  # per-episode classification / NER head
        self.task_type: str | None = None  # the current episode's (set by begin_episode)
        self.uses_episode_head = True  # the current episode's task type has a per-episode head
        if freeze_embeddings:
            for p in loose.get_input_embeddings().parameters():
                p.requires_grad_(False)
            for name, p in backbone.named_parameters():
                if "position_embeddings" in name or name.startswith("wpe") or "token_type_embeddings" in name:
                    p.requires_grad_(False)
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward (non-reentrant, so double backward works)."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.backbone, "activation_checkpointing_enable"):  # transformers >= 5
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    # ------------------------------------------------------------------ parameters
    def meta_parameters(self) -> list[nn.Parameter]:
        return [p for p in list(self.backbone.parameters()) + list(self.qa_head.parameters()) if p.requires_grad]

    def episode_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters()) if self.head is not None else []

    def head_parameter_names(self) -> list[str]:
        if not self.uses_episode_head or self.head is None:
            return ["qa_head.weight", "qa_head.bias"]
        return ["head.weight", "head.bias"]

    # ------------------------------------------------------------------ forward
    def hidden_states(self, batch: dict) -> torch.Tensor:
        if self.precision == "fp32":
            return self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        ids = batch["input_ids"]
        with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16):
            out = self.backbone(input_ids=ids, attention_mask=batch["attention_mask"])
        return out.last_hidden_state.float()

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "last":
            last = attention_mask.sum(1).clamp(min=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.pooling.startswith("mean"):
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            return F.normalize(pooled, dim=-1) if self.pooling == "mean-normalized" else pooled
        return hidden[:, 0]

    def embed(self, batch: dict) -> torch.Tensor:
        """A sentence vector per example for any task type (masked mean of the last hidden
        states), e.g. to compare a task's support set with source datasets."""
        hidden = self.hidden_states(batch)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def features(self, batch: dict) -> torch.Tensor:
        """Per-example (a pooled side, e.g. classification) or per-token (NER, QA) encoder features."""
        hidden = self.hidden_states(batch)
        return self.pool(hidden, batch["attention_mask"]) if side_of(batch).pooled else hidden

    def forward(self, batch: dict):
        feats = self.features(batch)
        if not side_of(batch).episode_head:
            logits = self.qa_head(feats)
            return logits[..., 0], logits[..., 1]
        if self.head is None or self.head.out_features != batch["num_labels"]:
            raise RuntimeError("no head for this episode: call begin_episode(support) before the forward pass")
        logits = self.head(feats)
        if self.class_mask is not None and not bool(self.class_mask.all()):
            logits = logits.masked_fill(~self.class_mask.to(logits.device), MASKED_LOGIT)
        return logits

    # ------------------------------------------------------------------ episodes
    @torch.no_grad()
    def begin_episode(self, support: Sequence[dict]) -> None:
        first = support[0]
        self.task_type = first["task_type"]
        self.uses_episode_head = side_of(first).episode_head
        if not self.uses_episode_head:
            self.head, self.class_mask = None, None
            return
        n = int(first["num_labels"])
        device = self.qa_head.weight.device
        dtype = self.qa_head.weight.dtype
        head = nn.Linear(self.hidden_size, n).to(device=device, dtype=dtype)
        counts = torch.zeros(n, device=device, dtype=torch.float32)
        for b in support:
            labels = b["labels"].to(device)
            labels = labels[labels != IGNORE_INDEX]
            counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        self.class_mask = counts > 0
        if self.head_init == "zero":
            nn.init.zeros_(head.weight); nn.init.zeros_(head.bias)
        elif self.head_init == "random":
            nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)
        else:
            was_training = self.training
            self.eval()
            sums = torch.zeros(n, self.hidden_size, device=device, dtype=torch.float32)
            for b in support:
                feats = self.features(b).float()
                labels = b["labels"].to(device)
                if feats.dim() == 3:  # NER: tokens with a label
                    keep = labels != IGNORE_INDEX
                    feats, labels = feats[keep], labels[keep]
                sums.index_add_(0, labels, feats)
            protos = sums / counts.clamp(min=1).unsqueeze(1)  # masked classes' rows are never used
            head.weight.copy_((2 * protos).to(dtype))
            head.bias.copy_((-(protos ** 2).sum(1)).to(dtype))
            self.train(was_training)
        self.head = head


def bf16_support(device: torch.device) -> str | None:
    """None when ``device`` runs bf16 natively, else why not (emulated bf16 on an old CPU is
    slower than fp32 and would be measured as a cost of the precision, not of the method)."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type == "cpu":
        flags = _cpu_flags()
        if flags and not ({"avx512_bf16", "amx_bf16"} & flags):
            return "this processor has neither avx512_bf16 nor amx_bf16 (see /proc/cpuinfo)"
        return None
    return f"bf16 on {device.type} is not supported by the suite"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()  # unknown (not Linux): trust the user


def episode_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The loss of the batch's task type (`heads.ModelSide.loss`); labels of classes the support set
    never shows are ignored (they cannot be learned in this episode)."""
    out = model(batch)
    side = side_of(batch)
    if not side.episode_head:
        return side.loss(out, batch)
    labels = batch["labels"]
    mask = getattr(model, "class_mask", None)
    if mask is not None and not bool(mask.all()):
        known = labels != IGNORE_INDEX
        absent = known & ~mask.to(labels.device)[labels.clamp(min=0)]
        labels = labels.masked_fill(absent, IGNORE_INDEX)
        if not bool((labels != IGNORE_INDEX).any()):
            return out.sum() * 0.0
        batch = {**batch, "labels": labels}
    return side.loss(out, batch)
