"""Tokenisation of episodes into model batches, for BERT, RoBERTa and GPT-2 tokenizers.

Per-example encodings are label-free where labels depend on the episode (class and
tag remapping), so one cache entry serves every episode that uses the example. The
cache lives in memory and, after :meth:`TokenCache.flush`, on disk keyed by the
tokenizer's exact vocabulary and the encoding settings.

NER alignment works on offsets rather than ``is_split_into_words`` so it needs no
``add_prefix_space`` and behaves the same for WordPiece and byte-level BPE: the words
are joined with spaces and every sub-token is mapped to the word holding its last
character; the first sub-token of a word carries the word's tag, the rest -100.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from metaft.suite.foundation.errors import ConfigError
from metaft.suite.foundation.files import cache_root

from .task_types import get_task_type

IGNORE_INDEX = -100


def prepare_tokenizer(tokenizer):
    """Give tokenizers without a pad token (GPT-2) one: the end-of-text token."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "is_fast", True):
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} is not a fast tokenizer; offsets are needed")
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None:  # drop the call-time truncation/padding state, keep vocab and pipeline
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        raw = json.dumps(state, sort_keys=True)
    else:
        raw = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EncodingSettings:
    max_length: int = 128
    stride: int = 32  # QA: overlap of consecutive windows over a long context

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ConfigError(f"max_length must be >= 16, got {self.max_length}")
        if not 0 <= self.stride <= self.max_length // 2:
            raise ConfigError(f"stride must be in [0, max_length/2], got {self.stride}")


def default_cache_dir() -> Path:
    return cache_root() / "tokens"


class TokenCache:
    """Per-example encodings keyed by (tokenizer, task type, settings, example id)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, persist: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.persist = persist
        self._tables: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self.hits = 0
        self.misses = 0

    def table(self, key: str) -> dict:
        if key not in self._tables:
            table = {}
            path = self.cache_dir / f"{key}.pkl"
            if self.persist and path.is_file():
                try:
                    with open(path, "rb") as fh:
                        table = pickle.load(fh)
                except Exception:  # a damaged cache is rebuilt, never trusted
                    table = {}
            self._tables[key] = table
        return self._tables[key]

    def mark_dirty(self, key: str) -> None:
        self._dirty.add(key)

    def flush(self) -> None:
        if not self.persist:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for key in list(self._dirty):
            path = self.cache_dir / f"{key}.pkl"
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(self._tables[key], fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        self._dirty.clear()


class EpisodeEncoder:
    """Turns canonical examples into padded tensor batches for one tokenizer."""

    def __init__(self, tokenizer, settings: EncodingSettings | None = None, cache: TokenCache | None = None):
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.settings = settings or EncodingSettings()
        self.cache = cache if cache is not None else TokenCache(persist=False)
        self.fingerprint = tokenizer_fingerprint(tokenizer)

    # ------------------------------------------------------------------ cache
    def cached(self, task_type: str, examples: list[dict], encode) -> list:
        key = f"{task_type}-{self.fingerprint}-{self.settings.max_length}-{self.settings.stride}"
        table = self.cache.table(key)
        missing = [ex for ex in examples if ex["id"] not in table]
        self.cache.hits += len(examples) - len(missing)
        self.cache.misses += len(missing)
        if missing:
            for ex, enc in zip(missing, encode(missing)):
                table[ex["id"]] = enc
            self.cache.mark_dirty(key)
        return [table[ex["id"]] for ex in examples]

    # ------------------------------------------------------------------ encoders
    def _encode_texts(self, examples: list[dict]) -> list[list[int]]:
        enc = self.tokenizer([ex["text"] for ex in examples], truncation=True,
                             max_length=self.settings.max_length)
        return [list(ids) for ids in enc["input_ids"]]

    def _encode_words(self, examples: list[dict]) -> list[tuple[list[int], list[int]]]:
        texts, starts = [], []
        for ex in examples:
            s, pos = [], 0
            for w in ex["tokens"]:
                s.append(pos)
                pos += len(w) + 1
            texts.append(" ".join(ex["tokens"]))
            starts.append(s)
        enc = self.tokenizer(texts, truncation=True, max_length=self.settings.max_length,
                             return_offsets_mapping=True)
        out = []
        for ids, offsets, word_starts in zip(enc["input_ids"], enc["offset_mapping"], starts):
            first_of_word, prev = [], -1
            for (a, b) in offsets:
                if b <= a:  # special token
                    first_of_word.append(-1)
                    continue
                word = bisect.bisect_right(word_starts, b - 1) - 1
                first_of_word.append(word if word != prev else -1)
                prev = word
            out.append((list(ids), first_of_word))
        return out

    def _questions(self, examples: list[dict]) -> list[str]:
        """Questions cut so a window keeps room for more context than the stride (else the fast
        tokenizer panics: 'stride must be strictly less than max_len'); only long questions with
        a short max length are cut."""
        st = self.settings
        room = max(1, st.max_length - 4 - 2 * st.stride - 1)  # 4: [CLS] q [SEP] c [SEP] (RoBERTa: 4 too)
        out = []
        for ex in examples:
            q = ex["question"].lstrip()
            offsets = self.tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            out.append(q[: offsets[room - 1][1]] if len(offsets) > room else q)
        return out

    def _encode_qa(self, examples: list[dict]) -> list[list[dict]]:
        tok, st = self.tokenizer, self.settings
        enc = tok(self._questions(examples), [ex["context"] for ex in examples],
                  truncation="only_second", max_length=st.max_length,
                  stride=st.stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        per_example: list[list[dict]] = [[] for _ in examples]
        for f, sample in enumerate(enc["overflow_to_sample_mapping"]):
            ex = examples[sample]
            seq_ids = enc.sequence_ids(f)
            offsets = enc["offset_mapping"][f]
            ctx = [i for i, s in enumerate(seq_ids) if s == 1]
            c0, c1 = ctx[0], ctx[-1]
            start = end = 0  # the no-answer position (first token)
            answers = ex["answers"]
            if answers["text"]:
                a0 = answers["answer_start"][0]
                a1 = a0 + len(answers["text"][0])
                if offsets[c0][0] <= a0 and offsets[c1][1] >= a1:
                    start = c0
                    while start <= c1 and offsets[start][0] <= a0:
                        start += 1
                    start -= 1
                    end = c1
                    while end >= c0 and offsets[end][1] >= a1:
                        end -= 1
                    end += 1
            context_offsets = [tuple(o) if s == 1 else None for o, s in zip(offsets, seq_ids)]
            per_example[sample].append({"input_ids": list(enc["input_ids"][f]), "start": start, "end": end,
                                        "offsets": context_offsets})
        return per_example

    # ------------------------------------------------------------------ batches
    def pad(self, seqs: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        out = torch.full((len(seqs), width), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out

    def base_batch(self, ids: list[list[int]]) -> dict:
        input_ids = self.pad(ids, self.tokenizer.pad_token_id)
        mask = self.pad([[1] * len(s) for s in ids], 0)
        return {"input_ids": input_ids, "attention_mask": mask}

    def encode(self, task_type: str, examples: list[dict], num_labels: int = 0) -> dict:
        """One batch of ``examples``; ``task_type``, its ``model_side`` and ``num_labels`` ride along for
        the model and the loss."""
        if not examples:
            raise ValueError("cannot encode an empty list of examples")
        kind = get_task_type(task_type)
        batch = kind.resolve("encoder")(self, examples, num_labels)
        batch["task_type"] = task_type
        batch["model_side"] = kind.model_side  # the model reads its head and loss through it
        batch["num_labels"] = int(num_labels)
        return batch

    def batches(self, task_type: str, examples: list[dict], num_labels: int = 0,
                batch_size: int = 16) -> list[dict]:
        """``examples`` in consecutive batches of at most ``batch_size``."""
        return [self.encode(task_type, examples[i: i + batch_size], num_labels)
                for i in range(0, len(examples), batch_size)]


# --------------------------------------------------------------------------- encoders per task type
def encode_classification(tok: "EpisodeEncoder", examples: list[dict], num_labels: int) -> dict:
    batch = tok.base_batch(tok.cached("classification", examples, tok._encode_texts))
    batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
    return batch


def encode_ner(tok: "EpisodeEncoder", examples: list[dict], num_labels: int) -> dict:
    encs = tok.cached("ner", examples, tok._encode_words)
    batch = tok.base_batch([e[0] for e in encs])
    labels = [[ex["tags"][w] if w >= 0 else IGNORE_INDEX for w in first] for ex, (_, first) in zip(examples, encs)]
    batch["labels"] = tok.pad(labels, IGNORE_INDEX)
    return batch


def encode_qa(tok: "EpisodeEncoder", examples: list[dict], num_labels: int) -> dict:
    feats = tok.cached("qa", examples, tok._encode_qa)
    flat = [(i, f) for i, fs in enumerate(feats) for f in fs]
    batch = tok.base_batch([f["input_ids"] for _, f in flat])
    batch["start_positions"] = torch.tensor([f["start"] for _, f in flat], dtype=torch.long)
    batch["end_positions"] = torch.tensor([f["end"] for _, f in flat], dtype=torch.long)
    batch["example_index"] = torch.tensor([i for i, _ in flat], dtype=torch.long)
    batch["offsets"] = [f["offsets"] for _, f in flat]
    batch["contexts"] = [ex["context"] for ex in examples]
    batch["answers"] = [ex["answers"]["text"] for ex in examples]
    return batch
