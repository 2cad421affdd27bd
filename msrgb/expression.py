"""Band arithmetic from the config (``expression: "(B08 - B04) / (B08 + B04)"``), parsed by
Python's own parser (``ast``) and evaluated on numpy arrays. Config text is never executed: only
numbers, band names, ``+ - * / **``, unary signs and parentheses are accepted; anything else
(calls, attributes, subscripts, comparisons, other names) is refused when the product is read,
before a run starts."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class ExpressionError(ValueError):
    """An expression that is not plain arithmetic on band names and numbers."""


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    #: the band names it uses, in order of first use
    bands: tuple[str, ...]

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value of every pixel, in float64; a division by zero or any other undefined
        value gives NaN or an infinity (which renders as no data), never an error."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(_eval(self.tree, values), dtype=np.float64)


def parse(text: str, known_bands: Sequence[str]) -> Expression:
    """Parse ``text``; raises :class:`ExpressionError` saying what is not allowed."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r} is not an arithmetic expression ({exc.msg})") from None
    bands: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ExpressionError(f"{text!r}: operator {type(node.op).__name__} is not allowed (use + - * / **)")
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise ExpressionError(f"{text!r}: operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"{text!r}: {node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            if node.id not in known_bands:
                raise ExpressionError(
                    f"{text!r}: {node.id!r} is not a band name (bands: {', '.join(known_bands)})"
                )
            if node.id not in bands:
                bands.append(node.id)
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.expr_context)):
            raise ExpressionError(
                f"{text!r}: {type(node).__name__} is not allowed; only numbers, band names, "
                "+ - * / ** and parentheses"
            )
    if not bands:
        raise ExpressionError(f"{text!r} uses no band")
    return Expression(text, tree, tuple(bands))


def _eval(node: ast.expr, values: Mapping[str, np.ndarray]) -> np.ndarray | float:
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))  # type: ignore[arg-type]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    raise ExpressionError(f"cannot evaluate {type(node).__name__}")  # parse() let nothing else through
