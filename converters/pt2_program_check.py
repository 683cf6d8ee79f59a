"""The JSON program of a ``.pt2`` (``models/{name}.json``) held to what ``torch.export.save`` writes, because
loading it turns some of its strings into code.

- ``expr_str`` (symbolic sizes) goes through ``sympy.sympify``, an ``eval``: it must be the ``srepr`` of a
  shape expression (calls of sympy / torch shape functions on literals and symbols, nothing else);
- ``guards_code`` is pasted into a function that ``exec`` defines and the module calls: each guard must be
  a comparison of input sizes (``L['x'].size()[0] <= 64``) built from a short list of names;
- value, argument and attribute names are pasted into the Python source ``torch.fx`` generates: every
  string that is not free text must be a dotted identifier;
- pytree contexts (``in_spec`` / ``out_spec``) import modules they name: only torch's enums and builtin
  ``defaultdict`` factories are accepted;
- unbacked symbols ``u<N>`` make torch count to N: N is bounded.

Free text (``as_string`` constants, which the code generator quotes; node metadata such as stack traces,
which nothing evaluates) is not checked. Everything is parsed with :mod:`ast` / :mod:`json`, never run.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

#: strings that name values, arguments, attributes, targets, dtypes, devices: dotted identifiers
NAME = re.compile(r"[A-Za-z0-9_.]*\Z")
#: string literals inside an expression (symbol names, Float('1.5e-5')): inert inside their quotes
LITERAL = re.compile(r"[A-Za-z0-9_.+\-]*\Z")
#: operator targets may also be extension ops ("#namespace:op")
TARGET = re.compile(r"#?[A-Za-z0-9_.:]*\Z")
#: keys whose values are free text nothing evaluates (node metadata: stack traces, module paths)
FREE_TEXT = frozenset({"metadata", "torch_version"})
#: string constants: the code generator quotes them, but torch also pastes them between quotes itself
QUOTED = frozenset({"as_string", "as_strings"})
QUOTABLE = re.compile(r"[^'\"\\\x00-\x1f\x7f]*\Z")
#: range_constraints keys are shape expressions ("s17 + 1"), only ever compared with printed symbols
SYMBOL_KEY = re.compile(r"[A-Za-z0-9_ .+\-*/()%]*\Z")
MAX_UNBACKED = 1_000_000
MAX_LITERAL = 2**64
MAX_STRING = 256

#: functions a shape expression's srepr calls (sympy classes, torch.utils._sympy.functions)
SYM_FUNCTIONS = frozenset({
    "Symbol", "Dummy", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "floor", "ceiling", "sign", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Xor", "Piecewise",
    "ExprCondPair", "Tuple", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "OpaqueUnaryFn_sqrt", "OpaqueUnaryFn_exp",
    "OpaqueUnaryFn_log"
})  # fmt: skip
POW_FUNCTIONS = frozenset({"Pow", "PowByNatural", "FloatPow"})
#: names a guard may use, and the attributes it may read
GUARD_NAMES = frozenset({
    "L", "args", "math", "torch", "inf", "max", "min", "abs", "int", "float", "round", "bool",
    "IsNonOverlappingAndDenseIndicator", "cast_symbool_to_symint_guardless"
})  # fmt: skip
GUARD_CALLABLE_NAMES = GUARD_NAMES - {"L", "args", "math", "torch", "inf"}
TENSOR_ATTRS = frozenset({"size", "stride", "storage_offset", "dim", "numel", "shape"})
MODULE_ATTRS = {
    "math": frozenset({"floor", "ceil", "trunc", "sqrt", "isnan", "isinf", "isfinite", "inf", "nan", "pi", "e", "log",
                       "log2", "exp", "fabs", "copysign"}),
    "torch": frozenset({"sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt", "sym_sum"}),
}  # fmt: skip
DEFAULTDICT_FACTORIES = frozenset({"list", "dict", "set", "int", "float", "str", "tuple"})


class _Refused(Exception):
    pass


def program_refusal(program: Any) -> str | None:
    """Why loading this ``models/*.json`` content would run code from it, or None when it is what torch writes."""
    try:
        _walk(program, "")
    except _Refused as e:
        return str(e)
    except RecursionError:
        return "is nested too deeply to check"
    return None


def _walk(node: Any, key: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not (SYMBOL_KEY if key == "range_constraints" else NAME).match(k):
                raise _Refused(f"has the name {_show(k)}, which is not an identifier (it would be pasted into code)")
            if k in FREE_TEXT:
                continue
            if k in QUOTED:
                for text in v if isinstance(v, list) else [v]:
                    if not isinstance(text, str) or not QUOTABLE.match(text):
                        raise _Refused(f"has the string constant {_show(str(text))} with quotes or control characters")
            elif k == "expr_str":
                _check_sym_expr(v)
            elif k == "guards_code":
                for g in v if isinstance(v, list) else [v]:
                    _check_guard(g)
            elif k in ("in_spec", "out_spec"):
                _check_treespec(v)
            elif k == "range_constraints" and isinstance(v, dict):
                _check_symbols(v)
                _walk(v, k)
            else:
                _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            _walk(v, key)
    elif isinstance(node, str) and not (TARGET if key == "target" else NAME).match(node):
        raise _Refused(
            f"has {key or 'a value'} {_show(node)}, which is not an identifier (it would be pasted into code)"
        )


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _check_symbols(ranges: dict[str, Any]) -> None:
    for name in ranges:
        m = re.fullmatch(r"[uf](\d+)", name)
        if m and int(m.group(1)) > MAX_UNBACKED:
            raise _Refused(f"declares the symbol {name!r}: torch would count to {m.group(1)} while loading")


def _parse(text: Any, what: str) -> ast.AST:
    if not isinstance(text, str) or len(text) > 100_000:
        raise _Refused(f"has a {what} that is not a short string")
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise _Refused(f"has a {what} that is not an expression: {_show(text)}") from None


def _int_literal(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _int_literal(node.operand)
        return None if inner is None else abs(inner)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer" and node.args:
        return _int_literal(node.args[0])
    return None


def _check_constant(node: ast.Constant, text: str, what: str) -> None:
    v = node.value
    if isinstance(v, bool) or v is None:
        return
    if isinstance(v, int) and abs(v) < MAX_LITERAL:
        return
    if isinstance(v, float):
        return
    if isinstance(v, str) and len(v) <= MAX_STRING and LITERAL.match(v):
        return
    raise _Refused(f"has a {what} with the literal {_show(repr(v))}: {_show(text)}")


def _check_sym_expr(text: Any) -> None:
    """``text`` must be the srepr of a shape expression: sympify evaluates it."""
    what = "symbolic shape (expr_str, evaluated by sympy)"
    tree = _parse(text, what)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.keyword, ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Constant):
            _check_constant(node, text, what)
            if isinstance(node.value, str) and len(node.value) > 64:
                raise _Refused(f"has a {what} with a long string: {_show(text)}")
            continue
        if isinstance(node, ast.Name) and not node.id.startswith("_"):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SYM_FUNCTIONS:
            if node.func.id in POW_FUNCTIONS and len(node.args) == 2:
                _check_exponent(node.args[1], text, what)
            continue
        raise _Refused(f"has a {what} that is not a shape expression ({type(node).__name__}): {_show(text)}")


def _check_exponent(node: ast.AST, text: str, what: str) -> None:
    """sympy evaluates powers of literals at once: 2**(2**62) would take all memory."""
    product = 1
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, (int, float)) and not isinstance(sub.value, bool):
            product *= max(abs(sub.value), 1)
    if product > 4096:
        raise _Refused(f"has a {what} raising to a literal power past 4096: {_show(text)}")


def _check_guard(text: Any) -> None:
    """A guard is exec'd into the module: sizes compared with literals, a few math helpers, nothing else."""
    what = "guard (guards_code, run as Python)"
    tree = _parse(text, what)
    allowed = (ast.Expression, ast.Load, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Subscript, ast.Slice,
               ast.Tuple, ast.keyword, ast.cmpop, ast.boolop, ast.operator, ast.unaryop, ast.IfExp)  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            _check_constant(node, text, what)
        elif isinstance(node, ast.Name):
            if node.id not in GUARD_NAMES:
                raise _Refused(f"has a {what} using the name {node.id!r}: {_show(text)}")
        elif isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            ok = MODULE_ATTRS.get(base, frozenset()) if base in MODULE_ATTRS else TENSOR_ATTRS
            if node.attr not in ok:
                raise _Refused(f"has a {what} reading the attribute {node.attr!r}: {_show(text)}")
        elif isinstance(node, ast.Call):
            f = node.func
            if not (isinstance(f, ast.Attribute) or (isinstance(f, ast.Name) and f.id in GUARD_CALLABLE_NAMES)):
                raise _Refused(f"has a {what} calling something other than a size or math helper: {_show(text)}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _check_exponent(node.right, text, what)
        elif not isinstance(node, allowed):
            raise _Refused(f"has a {what} that is not a size comparison ({type(node).__name__}): {_show(text)}")


def _check_treespec(text: Any) -> None:
    """``[protocol, {"type", "context", "children_spec"}]``; contexts are JSON that torch decodes with an
    object hook importing the module an ``__enum__`` names."""
    if text is None:
        return
    try:
        spec = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        spec = None
    if not (isinstance(spec, list) and len(spec) == 2):
        raise _Refused(f"has an input/output spec that is not a pytree spec: {_show(str(text))}")
    stack = [spec[1]]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if not isinstance(node, dict):
            raise _Refused("has an input/output spec with a malformed node")
        typ, context, children = node.get("type"), node.get("context"), node.get("children_spec", [])
        if typ is not None and (not isinstance(typ, str) or not NAME.match(typ)):
            raise _Refused(f"has an input/output spec with the type {_show(str(typ))}")
        if context is not None:
            try:
                decoded = json.loads(context) if isinstance(context, str) else context
            except (ValueError, RecursionError):
                raise _Refused(f"has an input/output spec whose context is not JSON: {_show(str(context))}") from None
            _check_context(decoded)
        if not isinstance(children, list):
            raise _Refused("has an input/output spec with malformed children")
        stack.extend(children)


def _check_context(node: Any) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__enum__" in item:
                module = str(item.get("fqn", "")).partition(":")[0]
                if module != "torch" and not module.startswith("torch."):
                    raise _Refused(f"has an input/output spec naming the enum {_show(str(item.get('fqn')))}, whose "
                                   "module torch would import")  # fmt: skip
                continue
            if "default_factory_module" in item and (
                item.get("default_factory_module") != "builtins"
                or item.get("default_factory_name") not in DEFAULTDICT_FACTORIES
            ):
                raise _Refused(
                    f"has an input/output spec with the defaultdict factory "
                    f"{_show(str(item.get('default_factory_module')))}.{item.get('default_factory_name')}"
                )
            for k, v in item.items():
                if not NAME.match(str(k)):
                    raise _Refused(f"has an input/output spec with the key {_show(str(k))}, not an identifier")
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not NAME.match(item):
            raise _Refused(f"has an input/output spec with the name {_show(item)}, not an identifier")
