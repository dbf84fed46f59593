"""The activation shuffle buffer of Neel's 1L-Sparse-Autoencoder (REPLICATION.md §6.1), as an iterator over batches.

`size` activations are held (run 1: batch 4096 × buffer_mult 384 = 1,572,864, bf16). The first fill reads `size` rows from
the chunk iterator, then permutes all rows. Batches are served from the front; once the next batch would cross the middle,
the rows already served are overwritten with fresh activations (sequential chunks) and all rows are permuted again. So
batches mix many prompts and, while data lasts, no activation is served twice and none is skipped.

End of data (REPLICATION.md §6.2): a refill that comes up short logs a warning and then follows `end_of_data`:
  * 'freeze' — the original's behaviour: write what arrived, keep reshuffling the fixed pool and serve it forever;
  * 'stop'   — serve the activations never served yet (fresh and old unserved rows, reshuffled), then stop;
  * 'wrap'   — nothing to do here: the chunk source restarts itself (`trainers.source`); if it still ends, as 'stop'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

log = logging.getLogger(__name__)


class MixingBuffer(Iterator[Tensor]):
    """Iterator of `[batch_size, d_in]` batches drawn from `chunks` (an iterator of `[n, d_in]` or `[b, pos, d_in]` tensors).

    The permutations use `generator` only, so a run is reproducible and resumable (`state_dict` / `load_state_dict`).
    `refill_seconds` accumulates the wall time spent reading chunks and permuting.
    """

    def __init__(self, chunks: Iterator[Tensor], *, size: int, batch_size: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.bfloat16, end_of_data: Literal["wrap", "stop", "freeze"] = "stop",
                 device: torch.device | str = "cpu"):
        if size < 2 * batch_size:
            raise ValueError(f"buffer size {size} must be at least 2 * batch_size = {2 * batch_size}")
        self.chunks, self.size, self.batch_size, self.generator = chunks, size, batch_size, generator
        self.dtype, self.end_of_data, self.device = dtype, end_of_data, torch.device(device)
        self.storage: Tensor | None = None  # allocated on the first chunk, when d_in is known
        self.pending: Tensor | None = None  # rows of a chunk that did not fit into the last refill
        self.ptr = size  # everything counts as consumed before the first fill
        self.limit = 0  # serve rows [ptr, ptr + batch) while ptr + batch <= limit
        self.valid = size  # rows holding real activations
        self.exhausted = False  # the chunk iterator has ended
        self.final = False  # 'stop': the last rows are being served
        self.refill_seconds = 0.0

    def __next__(self) -> Float[Tensor, "batch d_in"]:
        if self.ptr + self.batch_size > self.limit:
            self._refresh()
        if self.ptr + self.batch_size > self.limit:
            raise StopIteration
        assert self.storage is not None
        batch = self.storage[self.ptr:self.ptr + self.batch_size].clone()
        self.ptr += self.batch_size
        return batch

    # ----- refilling ------------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.final:
            return
        start = time.perf_counter()
        consumed, first = self.ptr, self.storage is None
        got = 0 if self.exhausted else self._read_into(consumed)
        if got < consumed and not self.exhausted:
            self.exhausted = True
            log.warning("activation data exhausted: a refill got %d of %d rows; end_of_data=%r", got, consumed, self.end_of_data)
        if self.storage is None:
            raise StopIteration  # no data at all
        if first:
            self.valid = got  # rows past `got` were never written
        if self.exhausted and self.end_of_data != "freeze":
            self._keep_unserved(got, consumed)
        self._permute()
        self.ptr = 0
        self.limit = self.valid if self.final or self.valid < 2 * self.batch_size else self.valid // 2
        self.refill_seconds += time.perf_counter() - start

    def _keep_unserved(self, got: int, consumed: int) -> None:
        """'stop': move the never-served rows (fresh [0, got) and old [consumed, valid)) to the front; serve them last."""
        assert self.storage is not None
        old = self.storage[consumed:self.valid].clone() if consumed < self.valid else self.storage[:0]
        self.storage[got:got + len(old)] = old
        self.valid, self.final = got + len(old), True
        dropped = self.valid % self.batch_size
        if dropped:
            log.warning("end of data: the last %d activations (less than one batch) will not be served", dropped)

    def _permute(self) -> None:
        assert self.storage is not None
        perm = torch.randperm(self.valid, generator=self.generator, device=self.generator.device).to(self.device)
        self.storage[:self.valid] = self.storage[:self.valid][perm]

    def _read_into(self, count: int) -> int:
        """Write up to `count` fresh rows at the front of the storage; return how many arrived."""
        got = 0
        while got < count:
            chunk = self._next_chunk()
            if chunk is None:
                break
            take = min(count - got, len(chunk))
            if self.storage is None:
                self.storage = torch.empty(self.size, chunk.shape[-1], dtype=self.dtype, device=self.device)
            self.storage[got:got + take] = chunk[:take]
            self.pending = chunk[take:] if take < len(chunk) else None
            got += take
        return got

    def _next_chunk(self) -> Tensor | None:
        if self.pending is not None:
            chunk, self.pending = self.pending, None
            return chunk
        try:
            chunk = next(self.chunks)
        except StopIteration:
            return None
        return chunk.reshape(-1, chunk.shape[-1]).to(self.device, self.dtype)

    # ----- resume ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors (storage, pending rows, generator state) and scalars needed to continue bit-identically."""
        tensors: dict[str, Tensor] = {"generator": self.generator.get_state()}
        if self.storage is not None:
            tensors["storage"] = self.storage[:self.valid].clone()  # a copy: serving goes on overwriting the storage
        if self.pending is not None:
            tensors["pending"] = self.pending.clone()
        scalars = {k: getattr(self, k) for k in ("ptr", "limit", "valid", "exhausted", "final")}
        return {"tensors": tensors, "scalars": scalars, "d_in": None if self.storage is None else self.storage.shape[1]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tensors = state["tensors"]
        self.generator.set_state(tensors["generator"])
        for k, v in state["scalars"].items():
            setattr(self, k, v)
        if "storage" in tensors:
            self.storage = torch.empty(self.size, state["d_in"], dtype=self.dtype, device=self.device)
            self.storage[:self.valid] = tensors["storage"].to(self.device, self.dtype)
        self.pending = tensors["pending"].to(self.device, self.dtype) if "pending" in tensors else None

    def adopt(self, rows: Float[Tensor, "n d_in"]) -> None:
        """Start from `rows` not served yet (a data-parallel run resumed on another rank count: this rank's share of the
        old ranks' unserved rows): they fill the end of the storage (the rest waits as pending rows), the front counts as
        served, so the next batch refreshes the buffer from the source and permutes everything together."""
        k = min(len(rows), self.size)
        self.storage = torch.empty(self.size, rows.shape[-1], dtype=self.dtype, device=self.device)
        self.storage[self.size - k:] = rows[:k].to(self.device, self.dtype)
        self.pending = rows[k:].to(self.device, self.dtype) if k < len(rows) else None
        self.ptr, self.limit, self.valid, self.exhausted, self.final = self.size - k, 0, self.size, False, False


def mixing_buffer(chunks: Iterator[Tensor], *, size: int, batch_size: int, generator: torch.Generator,
                  dtype: torch.dtype = torch.bfloat16, end_of_data: Literal["wrap", "stop", "freeze"] = "stop",
                  device: torch.device | str = "cpu") -> MixingBuffer:
    """`Iterator[Tensor] -> Iterator[Tensor]`: chunks of activations in, shuffled `[batch_size, d_in]` batches out."""
    return MixingBuffer(chunks, size=size, batch_size=batch_size, generator=generator, dtype=dtype,
                        end_of_data=end_of_data, device=device)
