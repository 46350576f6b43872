"""Tokenisation for BERT, RoBERTa and GPT-2 tokenizers: truncation, NER and QA alignment, caching."""
from __future__ import annotations

import pytest
import torch

from metaft.tasks import EncodingSettings, EpisodeEncoder, TokenCache, load_split
from metaft.tasks.metrics import normalize_answer
from metaft.tasks.tokenize import IGNORE_INDEX

ARCHS = ["bert", "roberta", "gpt2"]


@pytest.mark.parametrize("arch", ARCHS)
def test_classification_truncates_and_pads(arch, tokenizers, data_dir):
    rows = load_split("imdb", "test", data_dir).dataset[:8]
    examples = [{"id": str(i), "text": t, "label": y} for i, (t, y) in enumerate(zip(rows["text"], rows["label"]))]
    enc = EpisodeEncoder(tokenizers[arch], EncodingSettings(max_length=64))
    batch = enc.encode("classification", examples, num_labels=2)
    assert batch["input_ids"].shape[1] <= 64 and batch["input_ids"].shape[0] == 8
    assert batch["labels"].tolist() == rows["label"]
    assert tokenizers[arch].pad_token_id is not None  # GPT-2 got one
    assert (batch["attention_mask"].sum(1) >= 2).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_ner_labels_sit_on_the_first_sub_token(arch, tokenizers):
    tok = tokenizers[arch]
    words = ["Gladishiva", "visited", "Tel", "Aviv", "yesterday"]
    tags = [1, 0, 5, 6, 0]
    batch = EpisodeEncoder(tok).encode("ner", [{"id": "x", "tokens": words, "tags": tags}], num_labels=7)
    labels = batch["labels"][0].tolist()
    assert [t for t in labels if t != IGNORE_INDEX] == tags  # one label per word, in order
    ids = batch["input_ids"][0].tolist()
    # the sub-tokens after a labelled one, up to the next labelled one, spell out the same word
    positions = [i for i, t in enumerate(labels) if t != IGNORE_INDEX] + [len(labels)]
    for w, (a, b) in enumerate(zip(positions, positions[1:])):
        piece = tok.decode(ids[a:b], skip_special_tokens=True).strip()
        assert piece.replace(" ", "").lower() == words[w].lower(), (piece, words[w])  # MiniLM is uncased
    assert len(tok.convert_ids_to_tokens(tok(words[0])["input_ids"])) > 1 or arch == "bert"


@pytest.mark.parametrize("arch", ARCHS)
def test_qa_labelled_spans_decode_to_the_gold_answer(arch, tokenizers, data_dir):
    # squad train keeps the original answer offsets (the mirror rebuilt some validation offsets, see SOURCES.md)
    ds = load_split("squad", "train", data_dir).dataset.select(range(0, 4000, 10))
    examples = [{"id": r["id"], "context": r["context"], "question": r["question"], "answers": r["answers"]}
                for r in ds]
    enc = EpisodeEncoder(tokenizers[arch], EncodingSettings(max_length=128, stride=32))
    batch = enc.encode("qa", examples)
    fits = hits = 0
    seen_answer = set()
    for f in range(batch["input_ids"].shape[0]):
        i, s, e = int(batch["example_index"][f]), int(batch["start_positions"][f]), int(batch["end_positions"][f])
        if s == 0 and e == 0:
            continue
        seen_answer.add(i)
        offsets = batch["offsets"][f]
        text = examples[i]["context"][offsets[s][0]: offsets[e][1]]
        fits += 1
        hits += normalize_answer(text) == normalize_answer(examples[i]["answers"]["text"][0])
    assert fits > 300
    assert hits / fits >= 0.98, (hits, fits)
    assert len(seen_answer) >= 0.9 * len(examples)  # long contexts get windows holding the answer
    assert batch["input_ids"].shape[1] <= 128


def test_token_cache_is_reused_across_episodes_and_processes(tokenizers, data_dir, tmp_path):
    rows = load_split("sst2", "validation", data_dir).dataset[:32]
    examples = [{"id": f"sst2/validation/{i}", "text": t, "label": 0} for i, t in enumerate(rows["sentence"])]
    cache = TokenCache(tmp_path)
    enc = EpisodeEncoder(tokenizers["bert"], cache=cache)
    first = enc.encode("classification", examples)
    assert cache.misses == 32 and cache.hits == 0
    relabelled = [dict(ex, label=1) for ex in examples]
    second = enc.encode("classification", relabelled)
    assert cache.hits == 32 and torch.equal(first["input_ids"], second["input_ids"])
    assert second["labels"].tolist() == [1] * 32  # labels are per episode, never cached
    cache.flush()
    fresh = TokenCache(tmp_path)
    EpisodeEncoder(tokenizers["bert"], cache=fresh).encode("classification", examples)
    assert fresh.hits == 32 and fresh.misses == 0
    other = TokenCache(tmp_path)  # another tokenizer never hits this tokenizer's entries
    EpisodeEncoder(tokenizers["gpt2"], cache=other).encode("classification", examples)
    assert other.misses == 32
