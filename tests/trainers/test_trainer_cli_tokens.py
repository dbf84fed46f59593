"""The trainer's token sources named on the command line: `hub:REPO[@REV]` goes through sae_analysis.io.hub_tokens."""

from __future__ import annotations

import torch

from trainers import cli
from trainers.config import preset
from trainers.source import permute_sequences


def test_hub_spec_reads_every_sequence_with_bos_and_permutes_by_seed(monkeypatch):
    import sae_analysis.io.tokens as tokens_mod

    seqs = torch.arange(40 * 16).reshape(40, 16)
    asked = {}

    def fake_hub_tokens(repo, **kw):
        asked.update(repo=repo, **kw)
        return seqs

    monkeypatch.setattr(tokens_mod, "hub_tokens", fake_hub_tokens)
    cfg = preset("demo").with_overrides({"seq_len": 16})

    class Tok:
        bos_token_id = 5

    class Model:
        tokenizer = Tok()

    train, evaluation = cli.load_sequences("hub:NeelNanda/c4-code-tokenized-2b@abc123", cfg, Model(), None)
    assert asked == {"repo": "NeelNanda/c4-code-tokenized-2b", "n_seq": None, "seq_len": 16, "bos_token_id": 5,
                     "revision": "abc123"}
    assert torch.equal(train, permute_sequences(seqs, cfg.seed)) and train is evaluation
    assert sorted(train[:, 0].tolist()) == seqs[:, 0].tolist()  # a permutation of whole sequences
    cli.load_sequences("hub:some/repo", cfg, Model(), 9)
    assert asked["revision"] is None and asked["bos_token_id"] == 9  # --bos wins over the tokenizer
