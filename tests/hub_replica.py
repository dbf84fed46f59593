"""A gelu-1l-shaped replica of the four Hub repositories `paper_figures.py --source hub` reads, in their real layouts,
written into a folder that tests/hubserver.py serves (nothing large is committed; random weights):

    NeelNanda/GELU_1L512W_C4_Code         config.json (TransformerLens keys, as convert_neel_model_config reads them) and
                                          model_final.pth (a plain state dict), plus checkpoints/ as decoys
    NeelNanda/gpt-neox-tokenizer-digits   tokenizer.json (a byte-level BPE trained here with `tokenizers`),
                                          tokenizer_config.json, special_tokens_map.json
    NeelNanda/sparse_autoencoder          {v}.pt (W_enc, W_dec, b_enc, b_dec) + {v}_cfg.json for v in CHECKPOINTS
    datasets/NeelNanda/c4-code-tokenized-2b   data/train-0000i-of-0000n.parquet, list column `tokens` of 1,024 ids

The SAEs plant the structure the figures look for: a cluster of never-firing latents that share one encoder direction
grows from a quarter to half of the latents between checkpoints 21 and 22 (the planted ULF changepoint), and latents
7 and 12 (the case studies) are common. `FULL` is the published size (2048 x 16384 SAEs, d_vocab 48,262) for bench/.
"""

from __future__ import annotations

import io
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODEL_REPO = "NeelNanda/GELU_1L512W_C4_Code"
TOKENIZER_REPO = "NeelNanda/gpt-neox-tokenizer-digits"
SAE_REPO = "NeelNanda/sparse_autoencoder"
TOKENS_REPO = "NeelNanda/c4-code-tokenized-2b"
CHECKPOINTS = (9, 12, 15, 18, 21, 22, 25, 47)
"""Run-1 checkpoints of F2 (REPLICATION.md §4.3) and run 2's final 47."""
BOS = "<|endoftext|>"
ROW_LEN = 1024


@dataclass(frozen=True)
class ReplicaShape:
    d_model: int = 32
    n_heads: int = 2
    d_head: int = 16
    d_mlp: int = 64
    d_vocab: int = 512
    n_ctx: int = 1024
    dict_mult: int = 4
    n_shards: int = 3
    rows_per_shard: int = 8


TINY = ReplicaShape()
FULL = ReplicaShape(d_model=512, n_heads=8, d_head=64, d_mlp=2048, d_vocab=48_262, dict_mult=8, n_shards=4, rows_per_shard=48)


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write(root: Path, repo: str, path: str, data: bytes, dataset: bool = False) -> None:
    target = root.joinpath(*(["datasets"] if dataset else []), repo, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def model_config(shape: ReplicaShape) -> dict:
    """config.json of a Neel-format model: the keys TransformerLens's convert_neel_model_config reads, plus training keys."""
    return {"d_model": shape.d_model, "n_layers": 1, "d_mlp": shape.d_mlp, "d_head": shape.d_head, "n_heads": shape.n_heads,
            "n_ctx": shape.n_ctx, "d_vocab": shape.d_vocab, "tokenizer_name": TOKENIZER_REPO, "act_fn": "gelu",
            "attn_only": False, "normalization": "LN", "shortformer_pos": False, "ln_eps": 1e-5, "seed": 0,
            "model_name": "GELU_1L512W_C4_Code"}  # fmt: skip


def write_model(root: Path, shape: ReplicaShape, seed: int = 0) -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = model_config(shape)
    keys = ("d_model", "n_layers", "d_mlp", "d_head", "n_heads", "n_ctx", "d_vocab", "act_fn")
    tl_cfg = HookedTransformerConfig(**{k: cfg[k] for k in keys}, normalization_type="LN", seed=seed, device="cpu")
    model = HookedTransformer(tl_cfg)
    with torch.no_grad():  # non-trivial LN weights and biases, so that weight processing (folding, centring) matters
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b", "b_in", "b_out", "b_U")):
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    _write(root, MODEL_REPO, "config.json", json.dumps(cfg, indent=2).encode())
    _write(root, MODEL_REPO, "model_final.pth", _torch_bytes(state))
    _write(root, MODEL_REPO, "checkpoints/GELU_1L512W_C4_Code_000000.pth", _torch_bytes({}))  # a decoy: never loaded


def write_tokenizer(root: Path, shape: ReplicaShape, seed: int = 0) -> None:
    """A byte-level BPE fast tokenizer of exactly d_vocab ids (BOS = EOS = <|endoftext|> = id 0), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(2, 9))) for _ in range(max(2000, shape.d_vocab * 4))]
    corpus = [" ".join(words[i : i + 64]) for i in range(0, len(words), 64)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=shape.d_vocab, special_tokens=[BOS, "<|padding|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus, trainer)
    missing = shape.d_vocab - tok.get_vocab_size()
    if missing > 0:
        tok.add_tokens([f"<|extra_{i}|>" for i in range(missing)])
    assert tok.get_vocab_size() == shape.d_vocab and tok.token_to_id(BOS) == 0
    special = {"bos_token": BOS, "eos_token": BOS, "unk_token": BOS}
    config = special | {"tokenizer_class": "GPTNeoXTokenizer", "add_prefix_space": False, "model_max_length": 1024}
    _write(root, TOKENIZER_REPO, "tokenizer.json", tok.to_str().encode())
    _write(root, TOKENIZER_REPO, "tokenizer_config.json", json.dumps(config).encode())
    _write(root, TOKENIZER_REPO, "special_tokens_map.json", json.dumps(special).encode())


def sae_state(shape: ReplicaShape, version: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One checkpoint: random encoders scaled so that common latents fire on a few percent of tokens, plus the planted
    never-firing cluster along one shared direction (a quarter of the latents up to checkpoint 21, half after)."""
    d_mlp, d_sae = shape.d_mlp, shape.d_mlp * shape.dict_mult
    W_enc = torch.randn(d_mlp, d_sae, generator=g) / d_mlp**0.5
    b_enc = -torch.rand(d_sae, generator=g) * 0.3
    rare = d_sae // 4 if version <= 21 else d_sae // 2
    direction = torch.randn(d_mlp, 1, generator=torch.Generator().manual_seed(int(version == 47)))
    W_enc[:, d_sae - rare :] = direction + 0.1 * torch.randn(d_mlp, rare, generator=g)
    b_enc[d_sae - rare :] = -1e4
    W_dec = torch.randn(d_sae, d_mlp, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    return {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": 0.01 * torch.randn(d_mlp, generator=g)}


def write_saes(root: Path, shape: ReplicaShape, seed: int = 0) -> None:
    for v in CHECKPOINTS:
        g = torch.Generator().manual_seed(seed * 1000 + v)
        cfg = {"seed": 54 if v == 47 else 52, "batch_size": 4096, "buffer_mult": 384, "lr": 1e-4, "num_tokens": int(2e9),
               "l1_coeff": 3e-4, "beta1": 0.9, "beta2": 0.99, "dict_mult": shape.dict_mult, "seq_len": 128,
               "d_mlp": shape.d_mlp, "enc_dtype": "fp32", "model_batch_size": 512, "buffer_size": 1572864,
               "buffer_batches": 12288}  # fmt: skip
        _write(root, SAE_REPO, f"{v}.pt", _torch_bytes(sae_state(shape, v, g)))
        _write(root, SAE_REPO, f"{v}_cfg.json", json.dumps(cfg).encode())


def shard_names(shape: ReplicaShape) -> list[str]:
    return [f"data/train-{i:05d}-of-{shape.n_shards:05d}.parquet" for i in range(shape.n_shards)]


def write_tokens(root: Path, shape: ReplicaShape, seed: int = 0) -> None:
    """Parquet shards of rows of 1,024 ids in [1, d_vocab): no BOS inside the data, as in the real dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    for name in shard_names(shape):
        rows = rng.integers(1, shape.d_vocab, size=(shape.rows_per_shard, ROW_LEN), dtype=np.int64)
        buf = io.BytesIO()
        pq.write_table(pa.table({"tokens": pa.array(list(rows), type=pa.list_(pa.int64()))}), buf, row_group_size=16)
        _write(root, TOKENS_REPO, name, buf.getvalue(), dataset=True)
    _write(root, TOKENS_REPO, "README.md", b"# c4-code-tokenized-2b (replica)\n", dataset=True)


def build_replica(root: Path, shape: ReplicaShape = TINY, seed: int = 0) -> Path:
    """Write all four repositories under `root` (the folder a HubServer serves); returns `root`."""
    write_model(root, shape, seed)
    write_tokenizer(root, shape, seed)
    write_saes(root, shape, seed)
    write_tokens(root, shape, seed)
    return root
