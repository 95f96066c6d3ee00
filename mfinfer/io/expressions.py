"""The safe expression language of :func:`mfinfer.io.read_user_events`: checked with :mod:`ast`, never
given to Python's ``eval``.

uproot evaluates branch expressions with ``eval``, so an expression such as
``"x.__class__.__mro__[-1].__subclasses__()"`` can reach ``os.system``. Instead, an expression is
parsed here, every node is checked against a small grammar (anything else raises :class:`InputError`
naming the column, the expression and the construct), and the checked tree is evaluated by a
tree-walker that knows only those nodes, on branch arrays that were read beforehand.

Grammar (Python syntax, one expression)::

    expr  := NAME                    a branch of the tree (identifiers only; a branch whose name is
                                     not an identifier is read by giving the whole name as the expression)
           | NUMBER                  an int or float literal
           | expr OP expr            OP in  + - * / // % **  & |
           | -expr | +expr | ~expr
           | expr CMP expr           CMP in  == != < <= > >=  (one comparison; write (a < x) & (x < b))
           | FUNC(expr, ...)         FUNC in FUNCTIONS, positional arguments only, fixed arity
           | expr[index]             index: an int, a slice of int literals (x[1:], x[::-1]), ...,
                                     a mask or integer array built from expressions, or a tuple of
                                     those (x[:, 0])

Everything else is rejected: attribute access, strings, lambdas, comprehensions, keyword arguments,
``and``/``or``/``not``, ``a if c else b``, list/dict/set/tuple literals, ``:=`` ... An expression
must use at least one branch and nest at most :data:`MAX_DEPTH` levels.

Example:
    >>> import numpy as np
    >>> e = parse_expression("sqrt(px**2 + py**2)[px > 0]", column="pt")
    >>> e.names, e.evaluate({"px": np.array([3.0, -1.0]), "py": np.array([4.0, 0.0])}).tolist()
    (('px', 'py'), [5.0])
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfinfer.errors import InputError

__all__ = ["FUNCTIONS", "MAX_DEPTH", "Expression", "branch_expressions", "parse_expression"]

#: The functions an expression may call, with their number of arguments. All are numpy ufuncs (or
#: ``np.where``) that work elementwise on flat and jagged awkward arrays; the names follow uproot's
#: expression language, plus ``minimum``/``maximum`` (NaN-propagating; uproot offers fmin/fmax).
FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "abs": (np.absolute, 1),
    "sqrt": (np.sqrt, 1),
    "exp": (np.exp, 1),
    "log": (np.log, 1),
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "tan": (np.tan, 1),
    "sinh": (np.sinh, 1),
    "cosh": (np.cosh, 1),
    "tanh": (np.tanh, 1),
    "arctan2": (np.arctan2, 2),
    "hypot": (np.hypot, 2),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "where": (np.where, 3),
}
MAX_DEPTH = 100

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    # two plain numbers are raised as floats: 9 ** 9 ** 9 overflows instead of running for ever
    ast.Pow: ("**", lambda a, b: float(a) ** b if isinstance(a, int) and isinstance(b, int) else a**b),
    ast.BitAnd: ("&", operator.and_),
    ast.BitOr: ("|", operator.or_),
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_REJECTED: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.BoolOp: "'and'/'or' are not allowed; use & and | with parentheses: (a > 0) & (b < 1)",
    ast.IfExp: "'a if c else b' is not allowed; use where(c, a, b)",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "* unpacking is not allowed",
    ast.List: "list literals are not allowed",
    ast.Tuple: "tuples are only allowed inside [...] (x[:, 0])",
    ast.Set: "set literals are not allowed",
    ast.Dict: "dict literals are not allowed",
}


class _Reject(Exception):
    """A construct outside the grammar; the message says which."""


def _quote(text: str) -> str:
    """``text`` quoted for a message, shortened when long."""
    return repr(text if len(text) <= 120 else f"{text[:100]}...({len(text)} characters)")


def _hint() -> str:
    return (
        "expected branch names, int/float numbers, + - * / // % ** & | ~, one comparison "
        f"(== != < <= > >=), indexing and the functions {', '.join(FUNCTIONS)}; "
        "e.g. 'sqrt(px**2 + py**2)' or 'Electron_pt[:, 0]'"
    )


@dataclass(frozen=True)
class Expression:
    """A checked expression: its column, text, syntax tree and the names it reads (in order)."""

    column: str
    text: str
    node: ast.expr
    names: tuple[str, ...]

    @classmethod
    def branch(cls, name: str, column: str) -> Expression:
        """The expression that reads branch ``name`` as it is (any name, identifier or not)."""
        return cls(column, name, ast.Name(id=name, ctx=ast.Load()), (name,))

    def evaluate(self, values: Mapping[str, Any], n_events: int | None = None, where: str = "") -> Any:
        """Evaluate on ``values`` ({name: array} with every name of :attr:`names`).

        A failure (an index past the end of an event's list, mismatched shapes...) raises
        :class:`InputError` naming the column and the expression (and ``where``, e.g. the tree and
        file). With ``n_events`` the result must be an awkward array of one entry per event.
        """
        what = f"branches: column {self.column!r} = {_quote(self.text)}{where}"
        try:
            value = _evaluate(self.node, values)
        except (ArithmeticError, LookupError, TypeError, ValueError) as err:
            raise InputError(
                f"{what}: expression error ({type(err).__name__}: "
                f"{(str(err).splitlines() or [''])[0]}); fix the expression (an index such as "
                "[:, 1] needs that many entries in every event: select events with an "
                "EventSelection instead)"
            ) from err
        if n_events is None:
            return value
        import awkward as ak

        if isinstance(value, np.ndarray) and value.ndim:
            value = ak.from_numpy(value)
        if not isinstance(value, ak.Array) or len(value) != n_events:
            got = f"{len(value)}" if isinstance(value, ak.Array) else f"a {type(value).__name__}"
            raise InputError(
                f"{what}: expected one entry per event ({n_events}), got {got}; a mask or index on "
                "the event axis (x[x > 0], x[0]) drops events: index within events "
                "(Electron_pt[:, 0]) or pass an EventSelection"
            )
        return value


def parse_expression(text: str, column: str) -> Expression:
    """Check ``text`` against the grammar; raise :class:`InputError` naming ``column``, the expression
    and the offending construct if it is outside it."""
    if not isinstance(text, str):
        raise InputError(f"branches: column {column!r}: expected an expression string, got {text!r}")
    where = f"branches: column {column!r} = {_quote(text)}"
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        msg = getattr(err, "msg", None) or str(err) or type(err).__name__
        raise InputError(f"{where}: not a valid expression ({msg}); {_hint()}") from None
    names: dict[str, None] = {}
    try:
        _check(node, names, 0)
    except _Reject as err:
        raise InputError(f"{where}: {err}; {_hint()}") from None
    if not names:
        raise InputError(f"{where}: uses no branch, so it is not one value per event; {_hint()}")
    return Expression(column, text, node, tuple(names))


def branch_expressions(branches: Any) -> dict[str, str]:
    """The ``branches`` argument of ``read_user_events`` (a name, a list of names or a
    ``{column: expression}`` mapping) as ``{column: expression string}``; not checked yet."""
    if isinstance(branches, str):
        branches = [branches]
    if isinstance(branches, Mapping):
        items = [(str(k), v) for k, v in branches.items()]
    elif isinstance(branches, (list, tuple)):
        items = [(str(b), b) for b in branches]
    else:
        raise InputError(
            "branches: expected a list of branch names or a {column: expression} dict, got "
            f"{type(branches).__name__}"
        )
    for column, expr in items:
        if not isinstance(expr, str):
            raise InputError(
                f"branches: column {column!r}: expected a branch name or expression string, got "
                f"{expr!r} ({type(expr).__name__}); write it as a string, e.g. '2 * x'"
            )
    return dict(items)


def _int_literal(node: ast.expr | None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


def _check_index(node: ast.expr, names: dict[str, None], depth: int) -> None:
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    for item in items:
        if isinstance(item, ast.Slice):
            for part in (item.lower, item.upper, item.step):
                if part is not None and not _int_literal(part):
                    raise _Reject(f"slice bounds must be int literals, got {ast.unparse(part)!r}")
        elif not (isinstance(item, ast.Constant) and item.value is Ellipsis):
            _check(item, names, depth + 1)


def _check(node: ast.expr, names: dict[str, None], depth: int) -> None:
    """Raise :class:`_Reject` if ``node`` is outside the grammar; collect the names it reads."""
    if depth > MAX_DEPTH:
        raise _Reject(f"the expression nests more than {MAX_DEPTH} levels")
    if isinstance(node, ast.Name):
        names[node.id] = None
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)):
            raise _Reject(
                f"string constants ({node.value!r}) are not allowed; write branch names without quotes"
            )
        if type(node.value) not in (int, float):
            raise _Reject(f"the constant {node.value!r} is not allowed (only int and float numbers)")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise _Reject(f"the operator {type(node.op).__name__} is not allowed")
        _check(node.left, names, depth + 1)
        _check(node.right, names, depth + 1)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _Reject("'not' is not allowed; use ~ on a comparison: ~(x > 0)")
        _check(node.operand, names, depth + 1)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise _Reject("chained comparisons are not allowed; write (a < x) & (x < b)")
        if type(node.ops[0]) not in _COMPARE:
            raise _Reject(f"the comparison {type(node.ops[0]).__name__} is not allowed")
        _check(node.left, names, depth + 1)
        _check(node.comparators[0], names, depth + 1)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            _check(node.func, {}, depth + 1)  # names the construct: attribute access, lambda...
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise _Reject(f"calling {ast.unparse(node.func)!r} is not allowed (not a whitelisted function)")
        if node.keywords:
            raise _Reject(f"keyword arguments are not allowed (in the call of {node.func.id})")
        arity = FUNCTIONS[node.func.id][1]
        if len(node.args) != arity:
            raise _Reject(f"{node.func.id} takes {arity} argument(s), got {len(node.args)}")
        for arg in node.args:
            _check(arg, names, depth + 1)
    elif isinstance(node, ast.Subscript):
        _check(node.value, names, depth + 1)
        _check_index(node.slice, names, depth)
    elif isinstance(node, ast.Attribute):
        raise _Reject(f"attribute access (.{node.attr}) is not allowed")
    else:
        raise _Reject(_REJECTED.get(type(node), f"{type(node).__name__} is not allowed"))


def _evaluate(node: ast.AST, values: Mapping[str, Any]) -> Any:
    """Evaluate a checked node; knows only the nodes :func:`_check` lets through."""
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)][1](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Compare):
        left, right = _evaluate(node.left, values), _evaluate(node.comparators[0], values)
        return _COMPARE[type(node.ops[0])](left, right)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id][0](*(_evaluate(a, values) for a in node.args))
    if isinstance(node, ast.Subscript):
        return _evaluate(node.value, values)[_evaluate(node.slice, values)]
    if isinstance(node, ast.Slice):
        return slice(
            *(None if p is None else _evaluate(p, values) for p in (node.lower, node.upper, node.step))
        )
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, values) for e in node.elts)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover
