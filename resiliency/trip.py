"""``trip`` expressions: a small, safe subset of CEL, parsed by hand and evaluated by walking.

Grammar (lowest precedence first; all binary operators associate to the left)::

    expression := and ( "||" and )*
    and        := relation ( "&&" relation )*
    relation   := sum ( ("==" | "!=" | "<" | "<=" | ">" | ">=") sum )*
    sum        := product ( ("+" | "-") product )*
    product    := unary ( ("*" | "/" | "%") unary )*
    unary      := ("!" | "-") unary | primary
    primary    := INTEGER | "true" | "false" | VARIABLE | "(" expression ")"

VARIABLE is one of ``requests``, ``totalSuccesses``, ``totalFailures``,
``consecutiveSuccesses``, ``consecutiveFailures`` (Dapr's int64 counters).
Types are checked when the expression is compiled: arithmetic and ``< <= > >=``
take integers, ``&& || !`` take true/false, ``== !=`` take two of the same type,
and the whole expression must give true/false. Anything else (strings, floats,
function calls, unknown names, ``=``) is refused with the column where it starts.

Evaluation follows CEL: integer arithmetic is int64 with division and remainder
truncating toward zero; division by zero or overflow is an error; ``&&`` and
``||`` absorb an error when the other side decides the result (``false && err``
is false, ``true || err`` is true). An error that reaches the top counts as
false, as Dapr counts a failed evaluation as "do not trip".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from resiliency.errors import TripExpressionError
from yamlcheck import show

VARIABLES = (
    "requests",
    "totalSuccesses",
    "totalFailures",
    "consecutiveSuccesses",
    "consecutiveFailures",
)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_TWO_CHAR = {"==", "!=", "<=", ">=", "&&", "||"}
_ONE_CHAR = set("<>!+-*/%()")
_HALF_OPERATOR = {"=": "==", "&": "&&", "|": "||"}
_TYPE_NAMES = {"int": "an integer", "bool": "true/false"}

Type = Literal["int", "bool"]


@dataclass(frozen=True)
class _Token:
    kind: Literal["int", "name", "op", "end"]
    text: str
    column: int  # 1-based, as editors count


@dataclass(frozen=True)
class IntLiteral:
    value: int


@dataclass(frozen=True)
class BoolLiteral:
    value: bool


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Unary:
    operator: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Node
    right: Node


Node = IntLiteral | BoolLiteral | Variable | Unary | Binary


class _EvalError:
    """Marks a CEL evaluation error (division by zero, overflow) while walking."""


_ERROR = _EvalError()
_Value = int | bool | _EvalError
_Level = Callable[[], tuple[Node, Type]]
_Check = Callable[[_Token, Type, Type], Type]


def _fail(message: str) -> TripExpressionError:
    return TripExpressionError(message)


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(source):
        char = source[index]
        column = index + 1
        if char.isspace():
            index += 1
        elif char in "0123456789":
            end = index
            while end < len(source) and (source[end].isalnum() or source[end] in "._"):
                end += 1
            text = source[index:end]
            if not (text.isascii() and text.isdigit()):
                kind = "float literal" if "." in text else "number"
                raise _fail(
                    f"{kind} {show(text)} at column {column} is not supported (integers only)"
                )
            tokens.append(_Token("int", text, column))
            index = end
        elif char.isalpha() or char == "_":
            end = index
            while end < len(source) and (source[end].isalnum() or source[end] == "_"):
                end += 1
            tokens.append(_Token("name", source[index:end], column))
            index = end
        elif char in "\"'":
            raise _fail(f"string literal at column {column} is not supported")
        elif source[index : index + 2] in _TWO_CHAR:
            tokens.append(_Token("op", source[index : index + 2], column))
            index += 2
        elif char in _ONE_CHAR:
            tokens.append(_Token("op", char, column))
            index += 1
        elif char in _HALF_OPERATOR:
            raise _fail(
                f"{show(char)} at column {column} is not an operator"
                f" (did you mean {show(_HALF_OPERATOR[char])}?)"
            )
        else:
            raise _fail(f"unexpected character {show(char)} at column {column}")
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


class _Parser:
    """Recursive descent over the grammar in the module docstring, checking types as it goes."""

    def __init__(self, source: str) -> None:
        self._tokens = _tokenize(source)
        self._position = 0

    def parse(self) -> Node:
        node, node_type = self._or()
        token = self._peek()
        if token.kind != "end":
            raise _fail(f"unexpected {show(token.text)} at column {token.column}")
        if node_type != "bool":
            raise _fail("the expression gives an integer; it must give true or false")
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._position]

    def _take(self) -> _Token:
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _at(self, *operators: str) -> bool:
        token = self._peek()
        return token.kind == "op" and token.text in operators

    def _binary(
        self, operand: _Level, operators: tuple[str, ...], check: _Check
    ) -> tuple[Node, Type]:
        left, left_type = operand()
        while self._at(*operators):
            token = self._take()
            right, right_type = operand()
            result_type = check(token, left_type, right_type)
            left, left_type = Binary(token.text, left, right), result_type
        return left, left_type

    def _or(self) -> tuple[Node, Type]:
        return self._binary(self._and, ("||",), _check_logical)

    def _and(self) -> tuple[Node, Type]:
        return self._binary(self._relation, ("&&",), _check_logical)

    def _relation(self) -> tuple[Node, Type]:
        return self._binary(self._sum, ("==", "!=", "<", "<=", ">", ">="), _check_relation)

    def _sum(self) -> tuple[Node, Type]:
        return self._binary(self._product, ("+", "-"), _check_arithmetic)

    def _product(self) -> tuple[Node, Type]:
        return self._binary(self._unary, ("*", "/", "%"), _check_arithmetic)

    def _unary(self) -> tuple[Node, Type]:
        if self._at("!", "-"):
            token = self._take()
            operand, operand_type = self._unary()
            wanted: Type = "bool" if token.text == "!" else "int"
            if operand_type != wanted:
                raise _fail(
                    f'"{token.text}" at column {token.column} needs {_TYPE_NAMES[wanted]},'
                    f" not {_TYPE_NAMES[operand_type]}"
                )
            return Unary(token.text, operand), operand_type
        return self._primary()

    def _primary(self) -> tuple[Node, Type]:
        token = self._take()
        if token.kind == "int":
            value = int(token.text)
            if value > _INT64_MAX:
                raise _fail(f"integer at column {token.column} does not fit in 64 bits")
            return IntLiteral(value), "int"
        if token.kind == "name":
            return self._name(token)
        if token.kind == "op" and token.text == "(":
            node, node_type = self._or()
            closing = self._take()
            if closing.kind != "op" or closing.text != ")":
                raise _fail(f'expected ")" at column {closing.column}')
            return node, node_type
        if token.kind == "end":
            raise _fail(f"unexpected end of expression at column {token.column}")
        raise _fail(f"unexpected {show(token.text)} at column {token.column}")

    def _name(self, token: _Token) -> tuple[Node, Type]:
        name = token.text
        if name in ("true", "false"):
            return BoolLiteral(name == "true"), "bool"
        if self._at("("):
            raise _fail(f"function call {show(name)} at column {token.column} is not supported")
        if name in VARIABLES:
            return Variable(name), "int"
        message = f"unknown variable {show(name)} at column {token.column}"
        import difflib  # only when there is a mistake to word

        close = difflib.get_close_matches(name, VARIABLES, n=1)
        if close:
            message += f" (did you mean {show(close[0])}?)"
        raise _fail(message)


def _check_logical(token: _Token, left: Type, right: Type) -> Type:
    if left != "bool" or right != "bool":
        raise _fail(f'"{token.text}" at column {token.column} needs true/false on both sides')
    return "bool"


def _check_relation(token: _Token, left: Type, right: Type) -> Type:
    if token.text in ("==", "!="):
        if left != right:
            raise _fail(
                f'"{token.text}" at column {token.column} compares {_TYPE_NAMES[left]}'
                f" with {_TYPE_NAMES[right]}"
            )
    elif left != "int" or right != "int":
        raise _fail(f'"{token.text}" at column {token.column} needs integers on both sides')
    return "bool"


def _check_arithmetic(token: _Token, left: Type, right: Type) -> Type:
    if left != "int" or right != "int":
        raise _fail(f'"{token.text}" at column {token.column} needs integers on both sides')
    return "int"


def _int64(value: int) -> _Value:
    return value if _INT64_MIN <= value <= _INT64_MAX else _ERROR


def _divide(left: int, right: int, operator: str) -> _Value:
    if right == 0:
        return _ERROR
    # Go and CEL truncate toward zero; Python's // floors.
    quotient = abs(left) // abs(right)
    if (left < 0) != (right < 0):
        quotient = -quotient
    if operator == "/":
        return _int64(quotient)
    return left - right * quotient


def _compare(operator: str, left: int | bool, right: int | bool) -> bool:
    if operator == "==":
        return left == right
    if operator == "!=":
        return left != right
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


def _evaluate(node: Node, variables: Mapping[str, int]) -> _Value:
    if isinstance(node, IntLiteral | BoolLiteral):
        return node.value
    if isinstance(node, Variable):
        return variables[node.name]
    if isinstance(node, Unary):
        operand = _evaluate(node.operand, variables)
        if isinstance(operand, _EvalError):
            return operand
        return (not operand) if node.operator == "!" else _int64(-operand)
    left = _evaluate(node.left, variables)
    right = _evaluate(node.right, variables)
    if node.operator in ("&&", "||"):
        # CEL's logical operators are commutative over errors: the deciding side wins.
        deciding = node.operator == "||"
        if left is deciding or right is deciding:
            return deciding
        if isinstance(left, _EvalError) or isinstance(right, _EvalError):
            return _ERROR
        return not deciding
    if isinstance(left, _EvalError) or isinstance(right, _EvalError):
        return _ERROR
    if node.operator in ("/", "%"):
        return _divide(int(left), int(right), node.operator)
    if node.operator == "+":
        return _int64(left + right)
    if node.operator == "-":
        return _int64(left - right)
    if node.operator == "*":
        return _int64(left * right)
    return _compare(node.operator, left, right)


@dataclass(frozen=True)
class TripExpression:
    """A compiled trip expression; equal sources give equal objects (hot reload compares them)."""

    source: str
    tree: Node

    def evaluate(self, variables: Mapping[str, int]) -> bool:
        """Evaluate over Dapr's counters (all five names required); an eval error gives False."""
        return _evaluate(self.tree, variables) is True


def compile_trip(source: str) -> TripExpression:
    """Parse and type-check ``source``; raise TripExpressionError saying what and where."""
    if not source.strip():
        raise TripExpressionError("the expression is empty")
    return TripExpression(source, _Parser(source).parse())
