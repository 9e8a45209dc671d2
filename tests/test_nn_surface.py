"""torch.nn layers and torch.nn.functional functions, numerically against torch.

Each case is torch code, converted and run on the same inputs (and, for layers, the same weights,
perturbed so that no parameter keeps its constant init): outputs eagerly and under jit, and the
gradients of a random projection of the outputs with respect to the float inputs and the
parameters. `benchmarks/nn_surface.py` counts the torch names in these strings as tested.
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import Pair, flatten_outputs, gradients, import_source, run_flax

# Input kinds: shape and values. Inputs of the kinds in DIFFERENTIABLE get gradients; the others are
# labels, signs, weights and statistics (torch computes no gradient for some of those).
DIFFERENTIABLE = ("float", "positive", "probability", "logprob", "grid")
INPUTS = {
    "k1": ((6, 4, 3), "float"), "k1t": ((4, 6, 3), "float"), "k3": ((2, 4, 2, 2, 2), "float"),
    "b2": ((2,), "float"), "k2t": ((4, 2, 3, 3), "float"), "k3t": ((4, 3, 2, 2, 2), "float"),
    "cols20": ((2, 24, 20), "float"), "bags": ((4, 5), "int:10"), "ids": ((9,), "int:6"),
    "offsets": ((4,), "offsets"), "w9": ((9,), "float"), "theta": ((2, 2, 3), "float"),
    "theta3": ((2, 3, 4), "float"), "grid": ((2, 5, 6, 2), "grid"), "stat": ((4,), "constant"),
    "weights": ((6,), "constant"), "multilabels": ((4, 6), "multilabel"), "m": ((4, 6), "float"),
    "n": ((4, 6), "float"), "o": ((4, 6), "float"), "v": ((4,), "float"), "x3": ((2, 4, 9), "float"),
    "x4": ((2, 4, 7, 8), "float"), "x5": ((2, 4, 5, 6, 7), "float"), "seq": ((5, 2, 4), "float"),
    "pos": ((4, 6), "positive"), "prob": ((4, 6), "probability"), "labels": ((4,), "int:6"), "sign": ((4,), "sign"),
    "sign6": ((4, 6), "sign"), "bits": ((4, 6), "bit"), "logp": ((4, 6), "logprob"), "cols": ((2, 36, 12), "float"),
}

FUNCTIONS = [  # (expression of the inputs a, b, c, ...; their kinds)
    ("F.elu(a)", "m"), ("F.elu(a, alpha=0.5)", "m"), ("F.leaky_relu(a, 0.2)", "m"), ("F.relu6(a * 4)", "m"),
    ("F.sigmoid(a)", "m"), ("F.silu(a)", "m"), ("F.tanh(a)", "m"), ("F.mish(a)", "m"), ("F.hardswish(a * 3)", "m"),
    ("F.softplus(a)", "m"), ("F.softplus(a, beta=2.0, threshold=1.0)", "m"), ("F.celu(a)", "m"),
    ("F.celu(a, alpha=0.7)", "m"), ("F.softsign(a)", "m"), ("F.tanhshrink(a)", "m"), ("F.softmin(a, dim=1)", "m"),
    ("F.softmin(a, 0)", "m"), ("F.threshold(a, 0.1, -2.0)", "m"), ("F.hardshrink(a)", "m"),
    ("F.hardshrink(a, lambd=0.8)", "m"), ("F.softshrink(a)", "m"), ("F.softshrink(a, 0.3)", "m"),
    ("F.prelu(a, b[0, :4])", "x4 m"), ("F.prelu(a, b[0, :1])", "m n"), ("F.rrelu(a)", "m"),
    ("F.rrelu(a, 0.1, 0.3, training=False)", "m"), ("F.conv1d(a, b, stride=2, padding=1)", "x3 k1"),
    ("F.conv1d(a, b[:4, :2], dilation=2, groups=2)", "x3 k1"), ("F.conv3d(a, b, c, padding=1)", "x5 k3 b2"),
    ("F.conv3d(a, b, stride=(1, 2, 1))", "x5 k3"),
    ("F.conv_transpose1d(a, b, stride=2, padding=1, output_padding=1)", "x3 k1t"),
    ("F.conv_transpose2d(a, b, stride=2, groups=2, dilation=2)", "x4 k2t"),
    ("F.conv_transpose2d(a, b, c[:2], padding=1)", "x4 k2t b2"),
    ("F.conv_transpose3d(a, b, stride=(1, 2, 1))", "x5 k3t"), ("F.max_pool1d(a, 3, stride=2, padding=1)", "x3"),
    ("F.max_pool3d(a, 2)", "x5"), ("F.max_pool3d(a, (3, 2, 3), stride=2, padding=1, ceil_mode=True)", "x5"),
    ("F.avg_pool2d(a, 3, stride=2, padding=1, count_include_pad=False)", "x4"), ("F.avg_pool3d(a, 2)", "x5"),
    ("F.avg_pool3d(a, 3, stride=(1, 2, 2), padding=1, divisor_override=5)", "x5"),
    ("F.adaptive_avg_pool1d(a, 4)", "x3"), ("F.adaptive_avg_pool3d(a, (2, 3, 4))", "x5"),
    ("F.adaptive_avg_pool3d(a, 1)", "x5"), ("F.adaptive_max_pool1d(a, 5)", "x3"),
    ("F.adaptive_max_pool2d(a, (3, 5))", "x4"), ("F.adaptive_max_pool3d(a, (2, 2, 3))", "x5"),
    ("F.lp_pool1d(a, 2, 3)", "x3"), ("F.lp_pool2d(a, 2, (2, 3), stride=2)", "x4"),
    ("F.lp_pool2d(a.abs(), 3.0, 2, ceil_mode=True)", "x4"), ("F.lp_pool3d(a, 2, 2)", "x5"),
    ("F.unfold(a, 3)", "x4"), ("F.unfold(a, (2, 3), dilation=(2, 1), padding=1, stride=2)", "x4"),
    ("F.fold(a, (6, 8), 3, padding=1, stride=2)", "cols"), ("F.fold(a, (5, 7), (2, 3))", "cols20"),
    ("F.interpolate(a, scale_factor=2, mode='bilinear', align_corners=False)", "x4"),
    ("F.interpolate(a, size=(5, 9), mode='nearest')", "x4"),
    ("F.interpolate(a, size=(5, 9), mode='bicubic', align_corners=False)", "x4"),
    ("F.interpolate(a, scale_factor=2, mode='bicubic', align_corners=True)", "x4"),
    ("F.interpolate(a, size=(3, 2), mode='bicubic')", "x4"), ("F.interpolate(a, size=(5, 9), mode='nearest-exact')", "x4"), ("F.upsample(a, scale_factor=2)", "x4"),
    ("F.upsample_nearest(a, size=(9, 10))", "x4"), ("F.upsample_bilinear(a, scale_factor=2)", "x4"),
    ("F.affine_grid(a, (2, 4, 5, 6))", "theta"), ("F.affine_grid(a, [2, 3, 1, 7], align_corners=True)", "theta"),
    ("F.affine_grid(a, (2, 1, 3, 2, 4), align_corners=False)", "theta3"), ("F.grid_sample(a, b)", "x4 grid"),
    ("F.grid_sample(a, b, align_corners=True)", "x4 grid"),
    ("F.grid_sample(a, b, mode='nearest', padding_mode='border')", "x4 grid"),
    ("F.grid_sample(a, b, padding_mode='border', align_corners=True)", "x4 grid"),
    ("F.grid_sample(a, b, padding_mode='reflection')", "x4 grid"),
    ("F.grid_sample(a, b, mode='nearest', padding_mode='reflection', align_corners=True)", "x4 grid"),
    ("F.grid_sample(a, F.affine_grid(b, (2, 4, 6, 5), align_corners=False), align_corners=False)", "x4 theta"),
    ("F.group_norm(a, 2, b[0, :4], b[1, :4])", "x4 m"), ("F.instance_norm(a)", "x4"),
    ("F.instance_norm(a, weight=b[0, :4], bias=b[1, :4], eps=1e-3)", "x3 m"),
    ("F.batch_norm(a, b - 0.5, c + 0.5, b, c)", "x4 stat stat"),
    ("F.batch_norm(a, b - 0.5, c + 0.5, eps=0.1, training=False)", "x3 stat stat"),
    ("F.local_response_norm(a, 3)", "x4"), ("F.local_response_norm(a, 2, alpha=0.1, beta=0.5, k=2.0)", "x3"),
    ("F.pixel_shuffle(a, 2)", "x4"), ("F.channel_shuffle(a, 2)", "x4"), ("F.native_channel_shuffle(a, 4)", "x3"),
    ("F.cosine_similarity(a, b)", "m n"), ("F.cosine_similarity(a, b[:1], dim=-1, eps=1e-3)", "m n"),
    ("F.pairwise_distance(a, b)", "m n"), ("F.pairwise_distance(a, b, p=1.0, keepdim=True)", "m n"),
    ("F.pdist(a)", "m"), ("F.pdist(a, p=3)", "m"),
    ("F.bilinear(a, b, c.reshape(4, 6, 1).expand(4, 6, 6) * 0.5, c[0, :4])", "m n o"),
    ("F.embedding(a, b.T)", "labels m"), ("F.embedding_bag(a, b.T, c)", "ids m offsets"),
    ("F.embedding_bag(a, b.T, c, mode='max')", "ids m offsets"),
    ("F.embedding_bag(a, b.T, c, mode='sum', per_sample_weights=d, padding_idx=2)", "ids m offsets w9"),
    ("F.embedding_bag(a % 6, b.T, mode='sum')", "bags m"),
    ("F.embedding_bag(a, b.T, torch.cat([c, torch.tensor([9])]), include_last_offset=True)", "ids m offsets"),
    ("F.one_hot(a, 6)", "labels"), ("F.l1_loss(a, b)", "m n"), ("F.l1_loss(a, b, reduction='none')", "m n"),
    ("F.smooth_l1_loss(a, b)", "m n"), ("F.smooth_l1_loss(a, b, reduction='sum', beta=0.5)", "m n"),
    ("F.nll_loss(a, b)", "logp labels"), ("F.nll_loss(a, b, weight=c, reduction='sum')", "logp labels weights"),
    ("F.huber_loss(a, b)", "m n"), ("F.huber_loss(a, b, reduction='sum', delta=0.5)", "m n"),
    ("F.kl_div(a, b, reduction='batchmean')", "logp prob"), ("F.kl_div(a, b.log(), log_target=True)", "logp prob"),
    ("F.kl_div(a, b, reduction='none')", "logp prob"), ("F.soft_margin_loss(a, b)", "m sign6"),
    ("F.soft_margin_loss(a, b, reduction='sum')", "m sign6"), ("F.margin_ranking_loss(a, b, c)", "v v sign"),
    ("F.margin_ranking_loss(a, b, c, margin=0.5)", "v v sign"), ("F.hinge_embedding_loss(a, b)", "m sign6"),
    ("F.hinge_embedding_loss(a, b, margin=0.3, reduction='none')", "m sign6"),
    ("F.cosine_embedding_loss(a, b, c)", "m n sign"), ("F.cosine_embedding_loss(a, b, c, margin=0.2)", "m n sign"),
    ("F.multilabel_soft_margin_loss(a, b)", "m bits"),
    ("F.multilabel_soft_margin_loss(a, b, weight=c, reduction='sum')", "m bits weights"),
    ("F.poisson_nll_loss(a, b)", "m pos"), ("F.poisson_nll_loss(a, b * 3, log_input=False, full=True)", "pos pos"),
    ("F.gaussian_nll_loss(a, b, c)", "m n pos"),
    ("F.gaussian_nll_loss(a, b, c[:, 0], full=True, reduction='sum')",
                                                   "m n pos"),
    ("F.triplet_margin_loss(a, b, c)", "m n o"),
    ("F.triplet_margin_loss(a, b, c, margin=0.5, p=1, swap=True)", "m n o"),
    ("F.binary_cross_entropy_with_logits(a, b, weight=c, reduction='sum')", "m bits weights"),
    ("nn.BCEWithLogitsLoss(pos_weight=torch.full((6,), 2.0))(a, b)", "m bits"),
    ("nn.CrossEntropyLoss(weight=c, label_smoothing=0.1)(a, b)", "m labels weights"),
    ("F.multilabel_margin_loss(a, b)", "m multilabels"),
    ("F.multilabel_margin_loss(a, b, reduction='none')", "m multilabels"),
    ("F.triplet_margin_with_distance_loss(a, b, c)", "m n o"),
    ("F.triplet_margin_with_distance_loss(a, b, c, distance_function=lambda u, v: (u - v).abs().sum(-1), margin=0.5, "
     "swap=True)", "m n o"),
    ("F.alpha_dropout(a)", "m"), ("F.feature_alpha_dropout(a, 0.3, training=False)", "x4"),
    ("F.multi_margin_loss(a, b)", "m labels"),
    ("F.multi_margin_loss(a, b, p=2, margin=0.5, weight=c)", "m labels weights"),
]

LAYERS = [  # (layer expression; the kinds of its call's inputs)
    ("nn.ELU(alpha=0.5)", "m"), ("nn.Mish()", "m"), ("nn.Hardsigmoid()", "m"), ("nn.LogSoftmax(dim=1)", "m"),
    ("nn.Softmax(dim=0)", "m"), ("nn.Softplus()", "m"), ("nn.Softplus(beta=2.0)", "m"), ("nn.CELU(0.5)", "m"),
    ("nn.GLU()", "m"), ("nn.GLU(dim=1)", "x4"), ("nn.LogSigmoid()", "m"), ("nn.Softsign()", "m"),
    ("nn.Tanhshrink()", "m"), ("nn.Softmin(dim=1)", "m"), ("nn.Softmax2d()", "x4"), ("nn.Threshold(0.2, 5.0)", "m"),
    ("nn.Hardshrink()", "m"), ("nn.Softshrink(lambd=0.2)", "m"), ("nn.PReLU()", "x4"),
    ("nn.PReLU(4, init=0.1)", "x4"), ("nn.RReLU()", "m"), ("nn.RReLU(0.2, 0.4)", "m"),
    ("nn.Sequential(*(cls() for cls in (nn.CELU, nn.GLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Softplus, "
     "nn.Softmin, nn.Hardshrink, nn.Softshrink)))", "x4"),
    ("nn.Flatten()", "x4"), ("nn.Flatten(0, 2)", "x4"), ("nn.Unflatten(1, (2, 2))", "x4"),
    ("nn.Dropout1d(0.3)", "x3"), ("nn.Dropout2d()", "x4"), ("nn.Dropout3d(0.2)", "x5"),
    ("nn.Conv3d(4, 3, 2, padding=1)", "x5"), ("nn.Conv3d(4, 6, (1, 2, 3), stride=2, groups=2, bias=False)", "x5"),
    ("nn.ConvTranspose1d(4, 3, 3, stride=2)", "x3"), ("nn.ConvTranspose1d(4, 6, 2, groups=2, bias=False)", "x3"),
    ("nn.ConvTranspose3d(4, 2, 2, stride=2)", "x5"),
    ("nn.ConvTranspose3d(4, 2, 3, padding=1, output_padding=1, stride=2)",
                                                     "x5"),
    ("nn.BatchNorm3d(4)", "x5"), ("nn.BatchNorm3d(4, affine=False, eps=1e-3)", "x5"), ("nn.SyncBatchNorm(4)", "x4"),
    ("nn.SyncBatchNorm(4, momentum=0.3)", "x3"), ("nn.InstanceNorm1d(4)", "x3"),
    ("nn.InstanceNorm2d(4, affine=True)", "x4"), ("nn.InstanceNorm3d(4)", "x5"),
    ("nn.InstanceNorm3d(4, affine=True, eps=1e-3)", "x5"), ("nn.RMSNorm(6)", "m"),
    ("nn.RMSNorm([7, 8], eps=1e-5)", "x4"), ("nn.RMSNorm(6, elementwise_affine=False)", "m"),
    ("nn.EmbeddingBag(10, 3)", "bags"), ("nn.EmbeddingBag(6, 4, mode='max', padding_idx=0)", "ids offsets"),
    ("nn.EmbeddingBag(6, 4, mode='sum')", "ids offsets w9"), ("nn.Bilinear(6, 6, 3)", "m n"),
    ("nn.Bilinear(6, 6, 2, bias=False)", "m n"), ("nn.RNN(4, 3)", "seq"),
    ("nn.RNN(4, 3, num_layers=2, nonlinearity='relu', bidirectional=True)", "seq"), ("nn.RNNCell(6, 3)", "m"),
    ("nn.RNNCell(6, 4, nonlinearity='relu', bias=False)", "m"), ("nn.MaxPool3d(2)", "x5"),
    ("nn.MaxPool3d(3, stride=2, padding=1, ceil_mode=True)", "x5"), ("nn.AvgPool1d(3, stride=2, padding=1)", "x3"),
    ("nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False)", "x3"), ("nn.AvgPool3d(2)", "x5"),
    ("nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False)", "x5"), ("nn.AdaptiveAvgPool1d(4)", "x3"),
    ("nn.AdaptiveAvgPool3d((2, 3, 4))", "x5"), ("nn.AdaptiveAvgPool3d(1)", "x5"), ("nn.AdaptiveMaxPool1d(5)", "x3"),
    ("nn.AdaptiveMaxPool2d((3, 5))", "x4"), ("nn.AdaptiveMaxPool3d(2)", "x5"),
    ("nn.LPPool1d(2, 3, stride=2)", "x3"), ("nn.LPPool2d(2, (2, 3))", "x4"), ("nn.LPPool3d(2.0, 2)", "x5"),
    ("nn.Upsample(scale_factor=2, mode='bilinear')", "x4"), ("nn.Upsample(size=(9, 11))", "x4"),
    ("nn.UpsamplingNearest2d(scale_factor=2)", "x4"), ("nn.UpsamplingBilinear2d(size=(5, 9))", "x4"),
    ("nn.Unfold(3, padding=1)", "x4"), ("nn.Unfold((2, 2), stride=2)", "x4"),
    ("nn.Fold((6, 8), 3, padding=1, stride=2)",
                                                                             "cols"),
    ("nn.ChannelShuffle(2)", "x4"), ("nn.LocalResponseNorm(3)", "x4"), ("nn.LocalResponseNorm(4, k=2.0)", "x5"),
    ("nn.CosineSimilarity()", "m n"), ("nn.CosineSimilarity(dim=0, eps=1e-6)", "m n"),
    ("nn.PairwiseDistance()", "m n"), ("nn.PairwiseDistance(p=3.0, keepdim=True)", "m n"),
    ("nn.ZeroPad1d(2)", "x3"), ("nn.ZeroPad2d((1, 0, 2, 3))", "x4"), ("nn.ZeroPad3d((1, 2, 0, 1, 2, 0))", "x5"),
    ("nn.ConstantPad1d((2, 1), 3.5)", "x3"), ("nn.ConstantPad2d(1, -1.0)", "x4"),
    ("nn.ConstantPad3d(1, 0.5)", "x5"), ("nn.ReflectionPad1d((2, 3))", "x3"), ("nn.ReflectionPad2d(2)", "x4"),
    ("nn.ReflectionPad3d((1, 2, 0, 1, 2, 1))", "x5"), ("nn.ReplicationPad1d(2)", "x3"),
    ("nn.ReplicationPad2d((1, 2, 3, 0))", "x4"), ("nn.ReplicationPad3d(1)", "x5"), ("nn.CircularPad1d(2)", "x3"),
    ("nn.CircularPad2d((1, 2, 2, 1))", "x4"), ("nn.CircularPad3d(1)", "x5"), ("nn.MSELoss()", "m n"),
    ("nn.MSELoss(reduction='sum')", "m n"), ("nn.L1Loss(reduction='none')", "m n"),
    ("nn.SmoothL1Loss(beta=0.5)", "m n"), ("nn.NLLLoss()", "logp labels"),
    ("nn.NLLLoss2d(reduction='sum')", "logp labels"), ("nn.BCELoss()", "prob bits"),
    ("nn.BCELoss(reduction='sum')", "prob bits"), ("nn.BCEWithLogitsLoss()", "m bits"),
    ("nn.BCEWithLogitsLoss(reduction='none')", "m bits"), ("nn.HuberLoss()", "m n"),
    ("nn.HuberLoss(reduction='sum', delta=0.3)", "m n"), ("nn.KLDivLoss(reduction='batchmean')", "logp prob"),
    ("nn.KLDivLoss(log_target=True)", "logp logp"), ("nn.SoftMarginLoss()", "m sign6"),
    ("nn.MarginRankingLoss(margin=0.2)", "v v sign"), ("nn.HingeEmbeddingLoss(margin=0.5)", "m sign6"),
    ("nn.CosineEmbeddingLoss()", "m n sign"), ("nn.MultiLabelSoftMarginLoss()", "m bits"),
    ("nn.PoissonNLLLoss()", "m pos"), ("nn.PoissonNLLLoss(log_input=False, full=True, eps=1e-6)", "pos pos"),
    ("nn.GaussianNLLLoss()", "m n pos"), ("nn.GaussianNLLLoss(full=True, eps=1e-3)", "m n pos"),
    ("nn.TripletMarginLoss()", "m n o"), ("nn.TripletMarginLoss(margin=0.3, p=1.0, swap=True)", "m n o"),
    ("nn.MultiLabelMarginLoss()", "m multilabels"), ("nn.MultiLabelMarginLoss(reduction='sum')", "m multilabels"),
    ("nn.TripletMarginWithDistanceLoss()", "m n o"),
    ("nn.TripletMarginWithDistanceLoss(distance_function=nn.PairwiseDistance(p=1.0), margin=0.5)", "m n o"),
    ("nn.AlphaDropout(0.2)", "m"), ("nn.FeatureAlphaDropout()", "x4"), ("nn.MultiMarginLoss()", "m labels"),
    ("nn.MultiMarginLoss(p=2, margin=0.7)", "m labels"),
]

NAMES = "abcdefgh"


def make(kind: str, rng) -> np.ndarray:
    shape, values = INPUTS[kind]
    if values == "float":
        return rng.standard_normal(shape).astype(np.float32)
    if values == "multilabel":  # each row: its classes, then -1 (and anything after it, ignored)
        rows = [np.r_[rng.permutation(shape[1])[:k], -1, rng.integers(0, 6, shape[1])][:shape[1]]
                for k in rng.integers(1, shape[1], shape[0])]
        return np.asarray(rows, np.int64)
    if values == "offsets":  # bag starts: 0, then sorted (empty bags included)
        return np.r_[0, np.sort(rng.integers(0, 10, shape[0] - 1))].astype(np.int64)
    if values.startswith("int:"):
        return rng.integers(0, int(values[4:]), shape).astype(np.int64)
    draw = {"positive": lambda: rng.random(shape) + 0.2, "probability": lambda: rng.dirichlet(np.ones(shape[-1]),
                                                                                             shape[:-1]),
            "sign": lambda: np.where(rng.random(shape) < 0.5, -1.0, 1.0), "bit": lambda: rng.random(shape) < 0.5,
            "logprob": lambda: np.log(rng.dirichlet(np.ones(shape[-1]), shape[:-1])),
            "constant": lambda: rng.random(shape) + 0.5, "grid": lambda: rng.uniform(-1.3, 1.3, shape)}[values]
    return draw().astype(np.float32)


def function_source() -> str:
    defs = [f"def f{i}({', '.join(NAMES[:len(kinds.split())])}):\n    return {expr}\n"
            for i, (expr, kinds) in enumerate(FUNCTIONS)]
    return "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n" + "\n\n".join(defs)


def layer_source() -> str:
    defs = [f"class L{i}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            f"        self.layer = {expr}\n\n    def forward(self, *inputs):\n        return self.layer(*inputs)\n"
            for i, (expr, _) in enumerate(LAYERS)]
    return "import torch\nimport torch.nn as nn\n\n\n" + "\n\n".join(defs)


def convert(source: str, name: str):
    result = retarget.convert(source, path=f"{name}.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    return import_source(source, f"{name}_torch"), import_source(result.code, f"{name}_flax")


@pytest.fixture(scope="module")
def functions():
    return convert(function_source(), "nn_surface_functions")


@pytest.fixture(scope="module")
def layers():
    return convert(layer_source(), "nn_surface_layers")


def check_values(actual, expected, tol=1e-4):
    for a, e in zip(flatten_outputs(actual), flatten_outputs(expected), strict=True):
        assert a.shape == e.shape and (a.dtype == e.dtype or e.dtype == np.int64 and a.dtype == np.int32)
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol)


def probe_loss(outputs, probes, total=jnp.sum):
    return sum(total(o * p) for o, p in zip(outputs, probes))


def input_gradients(torch_fn, jax_fn, arrays, kinds):
    """d(sum(outputs * probes))/d(differentiable inputs), torch and JAX."""
    floats = [i for i, kind in enumerate(kinds) if INPUTS[kind][1] in DIFFERENTIABLE]
    tensors = [torch.tensor(a, requires_grad=i in floats) for i, a in enumerate(arrays)]
    outputs = [o for o in _leaves(torch_fn(*tensors)) if o.dtype.is_floating_point]
    probes = [np.random.default_rng(7).standard_normal(o.shape).astype(np.float32) for o in outputs]
    probe_loss(outputs, [torch.tensor(p) for p in probes], torch.sum).backward()
    want = [tensors[i].grad.numpy() for i in floats]

    def loss(*xs):
        values = [jnp.asarray(a) for a in arrays]
        for i, x in zip(floats, xs):
            values[i] = x
        return probe_loss([o for o in _leaves(jax_fn(*values)) if jnp.issubdtype(o.dtype, jnp.floating)], probes)

    if not floats:
        return (), want
    return jax.grad(loss, argnums=tuple(range(len(floats))))(*(jnp.asarray(arrays[i]) for i in floats)), want


def _leaves(value):
    return [a for v in value for a in _leaves(v)] if isinstance(value, (tuple, list)) else [value]


@pytest.mark.parametrize("index", range(len(FUNCTIONS)), ids=[expr for expr, _ in FUNCTIONS])
def test_function(functions, index):
    torch_side, flax_side = functions
    expr, kinds = FUNCTIONS[index]
    rng = np.random.default_rng(index)
    arrays = [make(kind, rng) for kind in kinds.split()]
    torch_fn, jax_fn = getattr(torch_side, f"f{index}"), getattr(flax_side, f"f{index}")
    if "rngs" in inspect.signature(jax_fn).parameters:  # a function with a random op (unused here) takes rngs
        jax_fn = functools.partial(jax_fn, rngs=nnx.Rngs(0))
    with torch.no_grad():
        expected = torch_fn(*map(torch.tensor, arrays))
    check_values(jax_fn(*map(jnp.asarray, arrays)), expected)
    if "one_hot" not in expr and "native_channel_shuffle" not in expr:  # integer output; no torch derivative
        for got, want in zip(*input_gradients(torch_fn, jax_fn, arrays, kinds.split()), strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-4)


def build_layer(modules, index) -> Pair:
    torch_side, flax_side = modules
    torch.manual_seed(index)
    torch_model = getattr(torch_side, f"L{index}")()
    with torch.no_grad():
        for parameter in torch_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
        for name, buffer in torch_model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.copy_(torch.rand_like(buffer) + (0.5 if name.endswith("var") else -0.5))
    flax_model = getattr(flax_side, f"L{index}")(rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), flax_model)
    torch_model.eval()
    flax_model.eval()
    return Pair(torch_model, flax_model, None)


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[expr for expr, _ in LAYERS])
def test_layer(layers, index):
    pair = build_layer(layers, index)
    rng = np.random.default_rng(index)
    kinds = LAYERS[index][1].split()
    arrays = [make(kind, rng) for kind in kinds]
    with torch.no_grad():
        expected = pair.torch_model(*map(torch.tensor, arrays))
    check_values(run_flax(pair.flax_model, arrays), expected)
    check_values(run_flax(pair.flax_model, arrays, jit=True), expected)
    for got, want in zip(*input_gradients(pair.torch_model, pair.flax_model, arrays, kinds), strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-4)
    if not list(pair.torch_model.parameters()):
        return
    torch_grads, flax_grads = gradients(pair, arrays)
    assert set(flax_grads) == set(torch_grads)
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(flax_grads[name], grad, rtol=1e-3, atol=1e-4, err_msg=name)


RANDOM = '''
import torch.nn as nn
import torch.nn.functional as F


class Drop(nn.Module):
    def __init__(self):
        super().__init__()
        self.rrelu = nn.RReLU(0.1, 0.3)
        self.alpha = nn.AlphaDropout(0.2)
        self.feature_alpha = nn.FeatureAlphaDropout(0.2)

    def forward(self, x):
        channels = (F.dropout2d(x, 0.5, self.training), F.dropout1d(x[:, :, 0], 0.5, training=self.training),
                    F.dropout3d(x[:, :, None], 0.5, self.training), self.feature_alpha(x),
                    F.feature_alpha_dropout(x, 0.2, training=self.training))
        return channels, (self.alpha(x), F.alpha_dropout(x, 0.2, self.training)), self.rrelu(x)


class Gumbel(nn.Module):
    def forward(self, logits):
        return F.gumbel_softmax(logits, tau=0.5), F.gumbel_softmax(logits, hard=True, dim=0)
'''
ALPHA = 1.7580993408473766
ALPHA_SCALE = 1.0 / np.sqrt((ALPHA * ALPHA * 0.2 + 1) * 0.8)  # torch's affine map for p = 0.2


def _kept_or_dropped(out, x, scale, dropped):
    """Per channel (axis 1 on): all values dropped (`dropped`), or all kept (`x * scale + shift`)."""
    out, x = out.reshape(out.shape[0], out.shape[1], -1), x.reshape(out.shape[0], out.shape[1], -1)
    shift = ALPHA * ALPHA_SCALE * 0.2 if scale == ALPHA_SCALE else 0.0
    gone, kept = np.all(np.isclose(out, dropped), -1), np.all(np.isclose(out, x * scale + shift, atol=1e-5), -1)
    assert (gone | kept).all() and 0 < gone.mean() < 1


def test_random_layers_in_training_mode_follow_torch_semantics():
    """In training, feature dropout (plain and alpha) drops whole channels, alpha dropout maps dropped
    values to SELU's saturation and rescales as torch, RReLU's slopes lie in [lower, upper]; in eval
    all of them are what torch computes."""
    torch_mod, flax_mod = convert(RANDOM, "nn_surface_random")
    x = np.random.default_rng(0).standard_normal((8, 16, 5, 6)).astype(np.float32) - 2.0
    model = flax_mod.Drop(rngs=nnx.Rngs(0))
    channels, alpha, rrelu = jax.tree.map(np.asarray, model(x))
    for out, src in zip(channels[:3], (x, x[:, :, 0], x[:, :, None])):
        _kept_or_dropped(out, src, 2.0, 0.0)
    dropped = (-ALPHA + ALPHA * 0.2) * ALPHA_SCALE
    for out in channels[3:]:
        _kept_or_dropped(out, x, ALPHA_SCALE, dropped)
    for out in alpha:
        kept = np.isclose(out, x * ALPHA_SCALE + ALPHA * ALPHA_SCALE * 0.2, atol=1e-5)
        assert np.all(np.isclose(out, dropped) | kept) and 0 < kept.mean() < 1
    slopes = rrelu[x < 0] / x[x < 0]
    assert slopes.min() >= 0.1 - 1e-6 and slopes.max() <= 0.3 + 1e-6 and slopes.std() > 0.01
    model.eval()
    with torch.no_grad():
        check_values(model(x), torch_mod.Drop().eval()(torch.tensor(x)))


def test_gumbel_softmax_samples_like_torch():
    """Soft samples are distributions, hard ones one-hot with the soft sample's gradient; each class is
    drawn as often as torch draws it (softmax of the logits)."""
    torch_mod, flax_mod = convert(RANDOM, "nn_surface_gumbel")
    logits = np.tile(np.array([[0.5, -1.0, 1.5]], np.float32), (20000, 1))
    soft, hard = map(np.asarray, flax_mod.Gumbel(rngs=nnx.Rngs(0))(logits))
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
    assert set(np.unique(hard)) == {0.0, 1.0} and (hard.sum(0) == 1).all()
    t_soft, _ = torch_mod.Gumbel()(torch.tensor(logits))
    draws = [np.bincount(np.argmax(s, -1), minlength=3) / len(s) for s in (soft, t_soft.numpy())]
    np.testing.assert_allclose(draws[0], draws[1], atol=0.02)
    np.testing.assert_allclose(draws[0], np.exp(logits[0]) / np.exp(logits[0]).sum(), atol=0.02)


PARAMETERS = '''
import torch
import torch.nn as nn


class Scales(nn.Module):
    def __init__(self):
        super().__init__()
        self.scales = nn.ParameterList([nn.Parameter(torch.randn(6)) for _ in range(2)])
        self.shifts = nn.ParameterDict({"a": nn.Parameter(torch.randn(6)), "b": nn.Parameter(torch.zeros(6))})

    def forward(self, x):
        for scale in self.scales:
            x = x * scale
        return x + self.shifts["a"] + self.shifts["b"] * self.scales[0]
'''


def test_parameter_containers():
    pair = build_layer(convert(PARAMETERS.replace("Scales", "L0"), "nn_surface_parameters"), 0)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    with torch.no_grad():
        check_values(run_flax(pair.flax_model, [x], jit=True), pair.torch_model(torch.tensor(x)))
    torch_grads, flax_grads = gradients(pair, [x])
    assert set(flax_grads) == set(torch_grads) == {"scales.0", "scales.1", "shifts.a", "shifts.b"}
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(flax_grads[name], grad, rtol=1e-4, atol=1e-5, err_msg=name)
