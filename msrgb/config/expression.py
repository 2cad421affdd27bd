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
from typing import TYPE_CHECKING

from msrgb.errors import ExpressionError

if TYPE_CHECKING:  # loaded to evaluate, not to parse: planning checks expressions without numpy
    import numpy as np

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


#: bounds of an expression: its text, and its nesting (parentheses, powers, signs; a flat chain
#: of + - * / counts once however long, and is evaluated without recursion)
MAX_LENGTH = 10_000
MAX_DEPTH = 100
_FLAT = (ast.Add, ast.Sub, ast.Mult, ast.Div)


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    #: the band names it uses, in order of first use
    bands: tuple[str, ...]

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value of every pixel, in float64; a division by zero or any other undefined
        value gives NaN or an infinity (which renders as no data), never an error."""
        import numpy as np

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(_eval(self.tree, values), dtype=np.float64)


def parse(text: str, known_bands: Sequence[str]) -> Expression:
    """Parse ``text``; raises :class:`ExpressionError` saying what is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is {len(text):,} characters long; at most {MAX_LENGTH:,} are allowed")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"{_short(text)} is not an arithmetic expression ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(
            f"{_short(text)} is nested too deeply to be read (at most {MAX_DEPTH} levels of "
            "parentheses, powers and signs)"
        ) from None
    text = _short(text)
    depth = nesting(tree)
    if depth > MAX_DEPTH:
        raise ExpressionError(
            f"{text} is nested {depth} levels deep (parentheses, powers, signs); at most {MAX_DEPTH}"
        )
    bands: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ExpressionError(f"{text}: operator {type(node.op).__name__} is not allowed (use + - * / **)")
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise ExpressionError(f"{text}: operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"{text}: {node.value!r} is not a number")
            try:
                float(node.value)
            except OverflowError:
                raise ExpressionError(f"{text}: the number {str(node.value)[:20]}... is too large") from None
        elif isinstance(node, ast.Name):
            if node.id not in known_bands:
                raise ExpressionError(
                    f"{text}: {node.id!r} is not a band name (bands: {', '.join(known_bands)})"
                )
            if node.id not in bands:
                bands.append(node.id)
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.expr_context)):
            raise ExpressionError(
                f"{text}: {type(node).__name__} is not allowed; only numbers, band names, "
                "+ - * / ** and parentheses"
            )
    if not bands:
        raise ExpressionError(f"{text} uses no band")
    return Expression(text, tree, tuple(bands))


def _short(text: str) -> str:
    """The expression for a message: quoted, and cut short when long."""
    return repr(text) if len(text) <= 200 else repr(text[:200]) + f"... ({len(text):,} characters)"


def nesting(tree: ast.expr) -> int:
    """How deeply ``tree`` nests, without recursion: each operand adds a level, except the left
    operand of + - * /, so that ``B1 + B2 + ... + Bn`` is one level whatever n."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, ast.BinOp):
            stack.append((node.left, depth if isinstance(node.op, _FLAT) else depth + 1))
            stack.append((node.right, depth + 1))
        elif isinstance(node, ast.UnaryOp):
            stack.append((node.operand, depth + 1))
    return deepest


def _eval(root: ast.expr, values: Mapping[str, np.ndarray]) -> np.ndarray | np.float64:
    """The value of ``root`` with an explicit stack (a long sum is a deep tree). Numbers are
    numpy float64, so that ``1 / 0`` or ``10.0 ** 400`` give an infinity, as arrays do, instead
    of a Python error."""
    import numpy as np

    out: list[np.ndarray | np.float64] = []
    stack: list[tuple[ast.expr, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if isinstance(node, ast.BinOp):
            if ready:
                right = out.pop()
                out.append(_BINARY[type(node.op)](out.pop(), right))  # type: ignore[arg-type]
            else:
                stack += [(node, True), (node.right, False), (node.left, False)]
        elif isinstance(node, ast.UnaryOp):
            if ready:
                out.append(_UNARY[type(node.op)](out.pop()))  # type: ignore[arg-type]
            else:
                stack += [(node, True), (node.operand, False)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            out.append(np.float64(node.value))
        elif isinstance(node, ast.Name):
            out.append(values[node.id])
        else:
            raise ExpressionError(f"cannot evaluate {type(node).__name__}")  # parse() let nothing else through
    return out[0]
