"""Property-based: on generated PyTorch programs the converter never fails internally, its output
always parses, and converting the output again changes nothing.

Programs are drawn from a grammar of the code real model files contain: module classes whose
`__init__` builds layers (containers, loops, buffers, parameters) and whose `forward` chains torch
functions, tensor methods, layer calls, control flow, in-place updates, `no_grad` blocks; helper
functions; training loops; and APIs with no rule (which must be reported, not crash).
"""
from __future__ import annotations

import ast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retarget

LAYERS = ["nn.Linear(8, 8)", "nn.Linear(8, 8, bias=False)", "nn.Conv2d(8, 8, 3, padding=1)", "nn.LayerNorm(8)",
          "nn.Dropout(0.1)", "nn.ReLU()", "nn.GELU()", "nn.BatchNorm1d(8)", "nn.Embedding(10, 8)", "nn.Identity()",
          "nn.Sequential(nn.Linear(8, 8), nn.ReLU())", "nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])",
          "nn.MultiheadAttention(8, 2, batch_first=True)", "nn.GRU(8, 8, batch_first=True)", "nn.GroupNorm(2, 8)",
          "nn.ModuleDict({'a': nn.Linear(8, 8)})", "nn.Parameter(torch.zeros(8))", "Block(8)"]
UNARY = ["torch.relu({})", "F.gelu({})", "{}.view(-1, 8)", "{}.transpose(0, 1)", "{}.mean(dim=-1, keepdim=True)",
         "torch.softmax({}, dim=-1)", "{}.permute(1, 0)", "{}[:, 0]", "{}.unsqueeze(0)", "torch.randn_like({})",
         "F.dropout({}, 0.1, self.training)", "{}.float()", "{}.to(x.device)", "{}.contiguous()", "torch.tanh({})",
         "{}.masked_fill({} > 0, 0.0)", "torch.special.i0e({})", "{}.exotic_method_xyz()", "F.layer_norm({}, (8,))",
         "{}.sum()", "{}.clamp(min=0)", "{}.reshape({}.size(0), -1)", "torch.flatten({}, 1)", "{}.detach()",
         "{}.sigmoid()", "{}.norm(dim=-1, keepdim=True)", "torch.where({} > 0, {}, {})", "{} ** 2", "-{}",
         "{}.chunk(2, dim=-1)[0]", "torch.cat([{}, {}], dim=-1)", "{} @ {}.T", "({} + {}) * 0.5", "max({}, {})"]
STATEMENTS = ["h = {e}", "h = h + {e}", "h += {e}", "h[0] = {e}", "h.mul_(0.5)", "if self.training:\n    h = {e}",
              "for i in range(2):\n    h = {e}", "with torch.no_grad():\n    h = {e}", "assert h.shape[0] > 0",
              "b, n = h.size(0), h.size(-1)", "if h.dim() == 2:\n    h = {e}\nelse:\n    h = {e}", "h = self.{layer}(h)",
              "h = torch.jit.annotate(torch.Tensor, h)", "print(h.shape)", "h = [{e}, {e}][0]"]
SCRIPT = """
def train(model, data, epochs=2):
    optimizer = torch.optim.{opt}(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        for x in data:
            optimizer.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
    return loss.item()
"""


def _expr(depth: int):
    leaves = st.sampled_from(["x", "h", "self.scale", "2.0"])
    if depth == 0:
        return leaves

    def fill(template_and_args):
        template, args = template_and_args
        return template.format(*(a if a.replace(".", "").isidentifier() else f"({a})" for a in args))
    return st.one_of(leaves, st.sampled_from(UNARY).flatmap(
        lambda t: st.tuples(st.just(t), st.lists(_expr(depth - 1), min_size=t.count("{}"),
                                                 max_size=t.count("{}"))).map(fill)))


@st.composite
def programs(draw) -> str:
    layers = draw(st.lists(st.sampled_from(LAYERS), min_size=1, max_size=5))
    init = [f"        self.layer{i} = {layer}" for i, layer in enumerate(layers)]
    names = [f"layer{i}" for i in range(len(layers))]
    body = []
    for _ in range(draw(st.integers(1, 6))):
        template = draw(st.sampled_from(STATEMENTS))
        while "{e}" in template:
            template = template.replace("{e}", draw(_expr(2)), 1)
        template = template.replace("{layer}", draw(st.sampled_from(names)))
        body.extend("        " + line for line in template.split("\n"))
    script = SCRIPT.format(opt=draw(st.sampled_from(["SGD", "Adam", "AdamW"]))) if draw(st.booleans()) else ""
    return ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
            "class Block(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n"
            "        self.fc = nn.Linear(d, d)\n\n    def forward(self, x):\n        return self.fc(x)\n\n\n"
            "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.register_buffer('scale', torch.ones(8))\n" + "\n".join(init) +
            "\n\n    def forward(self, x):\n        h = x\n" + "\n".join(body) + "\n        return h\n" + script)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(programs())
def test_converts_parses_and_is_idempotent(source):
    ast.parse(source)  # the generator writes valid Python
    first = retarget.convert(source, path="generated.py")  # an internal error would raise here
    ast.parse(first.code)
    second = retarget.convert(first.code, path="generated.py")
    assert second.code == first.code
    # kept lines are re-reported: the same escape hatches (one marker stands for identical reports on a line)
    assert {(d.code, d.message) for d in second.diagnostics} == {(d.code, d.message) for d in first.diagnostics}
    kept = sum("RETARGET-TODO" in line for line in first.code.splitlines())
    assert all(d.comment in first.code for d in first.diagnostics)  # every report has its marker
    assert kept <= len(first.diagnostics)  # and no marker is without a report
