"""Values memoised in a dict attribute, computed each call instead.

timm's EfficientFormer and LeViT keep `self.attention_bias_cache = {}` and, in eval mode, write

    if device_key not in self.attention_bias_cache:
        self.attention_bias_cache[device_key] = self.attention_biases[:, self.attention_bias_idxs]
    return self.attention_bias_cache[device_key]

An array stored on the module during a jitted call leaks a tracer into the next call; the value is a
pure function of the parameters (torch clears the cache whenever they can change), so the converted
method returns it directly: `return self.attention_biases[:, self.attention_bias_idxs[...]]`.
"""
from __future__ import annotations

import libcst as cst

from .names import dotted

NOTE = "# retarget: computed each call; an array cached on the module would leak out of jit"


def _cache_fill(stmt: cst.BaseStatement) -> tuple[str, str, cst.BaseExpression] | None:
    """(cache, key, value) of `if key not in self.cache: self.cache[key] = value` (no else)."""
    if not isinstance(stmt, cst.If) or stmt.orelse is not None or not isinstance(stmt.body, cst.IndentedBlock):
        return None
    test, body = stmt.test, stmt.body.body
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.NotIn) and len(body) == 1
            and isinstance(body[0], cst.SimpleStatementLine) and len(body[0].body) == 1
            and isinstance(body[0].body[0], cst.Assign) and len(body[0].body[0].targets) == 1):
        return None
    cache, key = dotted(test.comparisons[0].comparator), _code(test.left)
    target = body[0].body[0].targets[0].target
    if not (cache and cache.startswith("self.") and _stored_at(target, cache) == key):
        return None
    return cache, key, body[0].body[0].value


def _stored_at(node: cst.BaseExpression, cache: str) -> str | None:
    """`key` of `<cache>[key]`."""
    if isinstance(node, cst.Subscript) and dotted(node.value) == cache and len(node.slice) == 1 and isinstance(
            node.slice[0].slice, cst.Index):
        return _code(node.slice[0].slice.value)
    return None


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _returned(stmt: cst.BaseStatement, cache: str) -> str | None:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Return) \
            and stmt.body[0].value is not None:
        return _stored_at(stmt.body[0].value, cache)
    return None


def compute_cached_values(updated: cst.IndentedBlock, caches: set[str]) -> cst.IndentedBlock:
    """The block with each fill-then-return of a dict attribute in `caches` (`self.x = {}` in the
    constructor) replaced by returning the value."""
    body, out, i = list(updated.body), [], 0
    while i < len(body):
        fill = _cache_fill(body[i]) if i + 1 < len(body) else None
        if fill and fill[0][5:] in caches and _returned(body[i + 1], fill[0]) == fill[1]:
            ret = cst.SimpleStatementLine([cst.Return(fill[2])], leading_lines=[
                *body[i].leading_lines, cst.EmptyLine(comment=cst.Comment(NOTE))])
            out.append(ret)
            i += 2
            continue
        out.append(body[i])
        i += 1
    return updated.with_changes(body=out) if len(out) != len(body) else updated
