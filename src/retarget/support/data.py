"""torch.utils.data in NumPy: datasets and a batching loader that yields torch's batches.

Same order (sequential, or a seeded permutation when shuffling), same batch
sizes, same `drop_last` behaviour, and torch's default collation (tuples,
lists and dicts of samples become the same structure of stacked arrays).
"""
from __future__ import annotations

import numpy as np


class Dataset:
    """Base class of map-style datasets: subclasses define `__getitem__` and `__len__`. Generic in
    annotations, as torch's (`Dataset[tuple[Any, Any]]`)."""

    def __class_getitem__(cls, item):
        return cls

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the rows of the given arrays, returned together as a tuple."""

    def __init__(self, *tensors):
        self.tensors = tuple(np.asarray(t) for t in tensors)
        if any(len(t) != len(self.tensors[0]) for t in self.tensors):
            raise ValueError("TensorDataset: all arrays must have the same first dimension")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


def default_collate(samples):
    """torch's default_collate: stack arrays and numbers, recurse into tuples, lists and dicts."""
    first = samples[0]
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(column)) for column in zip(*samples))
    if isinstance(first, (str, bytes)):
        return list(samples)
    return np.stack([np.asarray(s) for s in samples])


class DataLoader:
    """Batches of `batch_size` samples in dataset order, or in a permutation drawn per epoch from a
    NumPy generator seeded with `seed` when `shuffle` is set; a short last batch unless `drop_last`."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None, seed=0):
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.shuffle, self.collate_fn = bool(shuffle), collate_fn or default_collate
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices = order[start:start + self.batch_size]
            if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate:
                yield tuple(t[indices] for t in self.dataset.tensors)  # the same stack, without the loop
            else:
                yield self.collate_fn([self.dataset[int(i)] for i in indices])
