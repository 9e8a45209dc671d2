"""Diagnostics with stable codes, and the errors retarget raises.

Every construct retarget cannot translate is kept as it was, marked in the
output with `# RETARGET-TODO(CODE): message` on the line above, and reported
as a `Diagnostic`. The codes are stable so they can be grepped and counted.
A whole file that cannot be converted (RT900, RT901) is kept as it was, with
its marker as the first line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MARKER = "RETARGET-TODO"
INTERNAL = "RT900"  # retarget itself failed on the file: a bug
UNREADABLE = "RT901"  # the file cannot be converted at all (syntax error, not UTF-8, not a notebook)
FILE_MARKER = re.compile(rf"^# {MARKER}\(({INTERNAL}|{UNREADABLE})\): ")

CODES = {
    "RT101": "torch API with no rule: kept as is, translate by hand",
    "RT102": "argument or call form the rule cannot express",
    "RT103": "torch layer class used as a value (not called)",
    "RT104": "in-place tensor method used as a value",
    "RT105": "dynamic structure retarget cannot follow (string attribute names, setattr)",
    "RT106": "weight tying between layers of unknown types",
    "RT107": "nn.init call on something that is not a known layer variable",
    "RT108": "random op where no PRNG key reaches the code",
    "RT109": "a definition in the file has the name of a helper the conversion needs",
    "RT110": "training-step code (backward, step, clipping) outside a recognised training loop",
    INTERNAL: "internal error in retarget: the file was kept unchanged; please report it",
    UNREADABLE: "the file cannot be converted (syntax error, not UTF-8, not a notebook): kept unchanged",
}

# How to fix each one (the HTML report shows it beside the escape)
HINTS = {
    "RT101": "write the JAX equivalent on the marked line (jnp / jax.nn / optax usually have it), or add a "
             "rule for the API to a rules/*.toml file so every file gets it",
    "RT102": "rewrite the call with the arguments the message names in a form the rule knows (literal values, "
             "keywords), or translate that call by hand",
    "RT103": "call the layer where it is built (nn.ReLU() rather than nn.ReLU), or map the class to its "
             "converted counterpart by hand",
    "RT104": "use the out-of-place method (x.add(y) rather than x.add_) where the value is used",
    "RT105": "replace string attribute names and setattr with plain attributes or an nnx.List / dict of "
             "layers, so the structure is visible in the code",
    "RT106": "tie the weights by sharing one layer (or its nnx.Param) between the two places",
    "RT107": "initialise the layer's own variable (layer.kernel / layer.bias) or pass an initializer where "
             "the layer is built",
    "RT108": "give the function an `rngs: nnx.Rngs` parameter (or a key) and draw from it",
    "RT109": "rename your definition: the converted file needs the helper under that name",
    "RT110": "put the step in a loop retarget recognises (forward, loss, backward, step together) or write "
             "it as an nnx.value_and_grad + optimizer.update step",
    INTERNAL: "report the traceback shown with the file (or a reduced copy) as a bug; the rest converted",
    UNREADABLE: "fix the syntax error or the encoding shown; the file was copied unchanged",
}


@dataclass(frozen=True)
class Diagnostic:
    line: int
    column: int
    code: str
    message: str
    path: str = "<string>"
    cell: int | None = None  # notebooks: the cell (1-based, markdown cells counted) that `line` is in
    traceback: str | None = field(default=None, compare=False)  # RT900: where retarget failed

    def __str__(self) -> str:
        where = f"cell {self.cell}:" if self.cell is not None else ""
        return f"{self.path}:{where}{self.line}:{self.column}: {self.code} {self.message}"

    @property
    def comment(self) -> str:
        return f"# {MARKER}({self.code}): {self.message}"


class ConversionError(Exception):
    """The input cannot be converted at all (e.g. a syntax error): nothing is written."""

    def __init__(self, message: str, path: str = "<string>", line: int = 0, column: int = 0):
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path, self.line, self.column, self.message = path, line, column, message


@dataclass(frozen=True)
class Escape:
    """Returned by a rewrite that cannot convert: the code and reason for the marker."""
    code: str
    message: str
