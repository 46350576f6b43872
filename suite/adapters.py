"""Parameter-efficient fine-tuning with Hugging Face ``peft``: LoRA or IA3 adapters on the backbone.

With adapters on, ``peft`` freezes every backbone weight; what stays trainable is the adapter
tensors plus the suite's own heads (the QA head and the per-episode classification/NER head,
which live outside the backbone). Every algorithm works unchanged, because they all train what
``requires_grad`` says: meta-training learns the adapter start (and the QA head), fine-tuning
updates the adapters and the head, and the functional inner loop of the MAML family differentiates
through the adapter tensors only.

Target modules default to peft's own per-architecture mapping (BERT/MiniLM/RoBERTa: attention
``query`` and ``value`` for LoRA; GPT-2: ``c_attn``), so a new architecture gets the maintained
choice rather than a guess of ours.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .config import PEFT_METHODS  # declared with the setting
from .foundation.errors import SuiteError


@dataclass
class AdapterSettings:
    method: str = "none"
    r: int = 8  # LoRA rank
    alpha: int = 16  # LoRA scaling alpha (the update is alpha / r * B A)
    targets: list[str] = field(default_factory=list)  # empty: peft's default modules for the architecture

    def validate(self) -> "AdapterSettings":
        if self.method not in PEFT_METHODS:
            raise SuiteError(f"peft must be one of {', '.join(PEFT_METHODS)}, got {self.method!r}")
        if not (isinstance(self.r, int) and self.r >= 1):
            raise SuiteError(f"lora_r must be an integer >= 1, got {self.r!r}")
        if not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise SuiteError(f"lora_alpha must be > 0, got {self.alpha!r}")
        return self

    def describe(self) -> dict:
        if self.method == "none":
            return {"method": "none"}
        out: dict[str, object] = {"method": self.method, "targets": sorted(self.targets) or "peft default"}
        if self.method == "lora":
            out.update(r=self.r, alpha=self.alpha)
        return out


def add_adapters(backbone: nn.Module, settings: AdapterSettings) -> nn.Module:
    """The backbone wrapped as a ``PeftModel`` with fresh adapters (peft's default init: LoRA's B
    is zero, so the wrapped model computes exactly what the backbone did); unchanged for "none"."""
    if settings.method == "none":
        return backbone
    from peft import IA3Config, LoraConfig, get_peft_model

    targets = list(settings.targets) or None
    try:
        config: LoraConfig | IA3Config
        if settings.method == "lora":
            config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules=targets)
        else:
            config = IA3Config(target_modules=targets,
                               feedforward_modules=[] if targets else None)
        return get_peft_model(backbone, config)
    except ValueError as exc:
        model_type = getattr(getattr(backbone, "config", None), "model_type", "?")
        raise SuiteError(f"cannot add {settings.method} adapters to a {model_type} model: "
                         f"{str(exc).splitlines()[0]}; name the modules with --peft-targets") from exc


def is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_adapter(backbone: nn.Module, folder: Path) -> Path | None:
    """The adapter start in peft's format (``adapter_config.json`` + ``adapter_model.safetensors``),
    loadable with ``PeftModel.from_pretrained(base_model, folder)``; None without adapters."""
    if not is_peft(backbone):
        return None
    backbone.save_pretrained(str(folder))  # type: ignore[operator]  # a PeftModel's, which nn.Module does not declare
    return folder
