"""Hybrid proxies: arithmetic expressions over registered proxy names.

``zen+0.5*log(flops)``, ``synflow_rank`` … NAS-Bench-Zero (Chen et al., 2022)
found that zero-shot proxies and FLOPs/params complement each other. The
expression is parsed with Python's ``ast`` into a tree that admits only
numbers, registered proxy names, ``+ - * / **``, unary minus and the
functions ``log``, ``log10``, ``sqrt``, ``exp``, ``abs``; it is never
``eval``-ed. Each named proxy is computed once per evaluation with the
hybrid's common options; a transform outside its domain (log of a
non-positive value) raises a ProxyError.
"""

from __future__ import annotations

import ast
import math
import operator

from hwnas.errors import HwnasError, ProxyError
from hwnas.search.proxies.base import Proxy, ProxyResult, proxy_class, proxy_names

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS = {"log": math.log, "log10": math.log10, "sqrt": math.sqrt, "exp": math.exp, "abs": abs}


def parse_expression(text: str) -> ast.AST:
    """The checked syntax tree of a hybrid expression; HwnasError names what is wrong."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise HwnasError(f"invalid proxy expression {text!r}: {err.msg} at column {err.offset}; "
                         "expected e.g. 'zen+0.5*log(flops)'") from None
    names = set(proxy_names())

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise HwnasError(f"unknown proxy {node.id!r} in {text!r}; "
                                 f"expected one of: {', '.join(sorted(names))}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise HwnasError(f"invalid proxy expression {text!r}: only the functions "
                                 f"{', '.join(FUNCTIONS)} may be called")
            if len(node.args) != 1 or node.keywords:
                raise HwnasError(f"invalid proxy expression {text!r}: {node.func.id}() takes one argument")
            check(node.args[0])
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise HwnasError(f"invalid proxy expression {text!r}: {node.value!r} is not a number")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            check(node.operand)
        else:
            raise HwnasError(f"invalid proxy expression {text!r}: {type(node).__name__} is not allowed "
                             "(numbers, proxy names, + - * / **, log/log10/sqrt/exp/abs)")

    check(tree)
    return tree


def referenced_names(tree: ast.AST) -> list[str]:
    """The proxy names a checked expression uses, in order of first appearance."""
    out: list[str] = []

    def visit(node):
        if isinstance(node, ast.Name):
            if node.id not in out:
                out.append(node.id)
        elif isinstance(node, ast.Call):
            visit(node.args[0])
        elif isinstance(node, ast.BinOp):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ast.UnaryOp):
            visit(node.operand)

    visit(tree)
    return out


def evaluate_expression(tree: ast.AST, values: dict[str, float], text: str = "") -> float:
    """The value of a checked expression given each proxy's value."""

    def walk(node):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            try:
                return _BINARY[type(node.op)](left, right)
            except (ZeroDivisionError, OverflowError) as err:
                raise ProxyError(f"hybrid {text!r}: {err}; the candidate is rejected") from None
        if isinstance(node, ast.Call):
            arg = walk(node.args[0])
            try:
                return FUNCTIONS[node.func.id](arg)
            except (ValueError, OverflowError):
                raise ProxyError(f"hybrid {text!r}: {node.func.id}({arg:.6g}) is undefined; "
                                 "the candidate is rejected") from None
        raise HwnasError(f"invalid proxy expression {text!r}")  # pragma: no cover - parse_expression rejects it

    return float(walk(tree))


class Hybrid(Proxy):
    """A weighted combination of registered proxies (not registered itself: any expression is one)."""

    def __init__(self, expression: str, **options):
        self.expression = " ".join(expression.split())
        self.tree = parse_expression(self.expression)
        self.names = referenced_names(self.tree)
        if not self.names:
            raise HwnasError(f"proxy expression {expression!r} names no proxy; expected e.g. 'zen+0.5*log(flops)'")
        common = {k: options.pop(k) for k in ("resolution", "batch_size", "repeat", "seed", "device", "dtype")
                  if k in options}
        components = {}
        used = set()
        for n in self.names:
            cls = proxy_class(n)
            own = {k: v for k, v in options.items() if k in cls.options}
            used.update(own)
            components[n] = cls(**common, **own)
        unknown = sorted(set(options) - used)
        if unknown:
            raise HwnasError(f"no proxy of {expression!r} has the option {', '.join(unknown)}")
        self.components = components
        self.name = self.expression
        super().__init__(**common)

    def settings(self) -> dict:
        return {"proxy": self.expression, "components": [p.settings() for p in self.components.values()]}

    def score(self, space, arch):
        values, parts = {}, {}
        for n, proxy in self.components.items():
            result = proxy.score(space, arch)
            values[n] = result.value
            parts[n] = result.value
        value = evaluate_expression(self.tree, values, self.expression)
        if not math.isfinite(value):
            raise ProxyError(f"hybrid {self.expression!r} gave a non-finite score; the candidate is rejected")
        return ProxyResult(value, parts)

    def evaluate(self, space, arch, generator):  # each component draws from its own seeded generator
        result = self.score(space, arch)
        return result.value, result.parts
