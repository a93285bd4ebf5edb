"""A key/value cache reserved once, written in place: what the hf backend decodes with.

transformers' ``DynamicCache`` grows every layer's keys and values by ``torch.cat`` on
each decoding step, which copies the whole cache every step; on the CPU that was a third
of a batched step (``benchmarks/decode_profile.py``). ``ReservedCache`` allocates each
layer's buffer once, for the longest sequence the batch can reach, writes new tokens
into it and hands attention a view of the filled part: the same tensors, so the same
results, without the copies. It is a ``DynamicCache`` to transformers (``generate``
accepts it as ``past_key_values``) and serves full-attention models only; for others
(sliding windows, linear attention, shared layers) ``supported`` says no and the backend
keeps transformers' own cache.

Two things it adds for the backend:
- ``from_prefix``: a batch that shares a prefix computes it once (batch 1) and every row
  starts from a copy of it, written straight into the reserved buffer;
- ``truncate``: scoring rewinds to the end of the context after each option, instead of
  copying the whole cache per option.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of ``capacity`` positions."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, key_dim = key_states.shape
        self._keys = torch.empty((batch, heads, self.capacity, key_dim), dtype=self.dtype,
                                 device=self.device)
        self._values = torch.empty((batch, heads, self.capacity, value_states.shape[-1]),
                                   dtype=self.dtype, device=self.device)
        self.length = 0
        self.keys, self.values = self._keys[:, :, :0], self._values[:, :, :0]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"reserved cache: {end} positions needed, {self.capacity} reserved")
        self._keys[:, :, self.length:end] = key_states  # broadcasts a batch-1 prefix
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def truncate(self, length: int) -> None:
        self.length = min(self.length, length)
        if self.is_initialized:
            self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the (negative) number of tokens to remove")
        self.truncate(self.length + tokens_to_remove)

    def reset(self) -> None:
        self.truncate(0)

    # Batch changes (sampling n per prompt, beam search) act on the whole buffer, so later
    # steps still write in place.
    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self.truncate(self.length)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.truncate(self.length)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self._keys = self._keys.index_select(0, beam_idx.to(self.device))
            self._values = self._values.index_select(0, beam_idx.to(self.device))
            self.truncate(self.length)


class ReservedCache(DynamicCache):
    """One ``ReservedLayer`` per model layer, each ``capacity`` positions long."""

    def __init__(self, num_layers: int, capacity: int):
        Cache.__init__(self, layers=[ReservedLayer(capacity) for _ in range(num_layers)])

    @staticmethod
    def supported(config) -> bool:
        """Whether every layer of a model with this config is plain full attention."""
        from transformers.cache_utils import get_layer_types_and_kwargs

        try:
            types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        except Exception:  # an unfamiliar config: keep transformers' own cache
            return False
        return bool(types) and all(t == "full_attention" for t in types)

    @classmethod
    def for_model(cls, model, capacity: int) -> "ReservedCache":
        return cls(model.config.get_text_config(decoder=True).num_hidden_layers, capacity)

    @classmethod
    def from_prefix(cls, prefix: Cache, batch: int, capacity: int) -> "ReservedCache":
        """A cache of ``batch`` rows, each starting with the batch-1 ``prefix``."""
        cache = cls(len(prefix.layers), capacity)
        for layer, source in zip(cache.layers, prefix.layers):
            keys, values = source.keys, source.values
            layer.update(keys.expand(batch, *keys.shape[1:]), values.expand(batch, *values.shape[1:]))
        return cache

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on (the buffers stay reserved)."""
        for layer in self.layers:
            layer.truncate(length)
