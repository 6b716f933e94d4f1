"""Go's text/template, the subset that Ollama's prompt templates use, executed as Go does.

Ollama renders every prompt through the model's TEMPLATE, a Go text/template (Ollama 0.12.6,
template/template.go ``Parse``/``Execute``). This module parses and executes that language:

- text and actions ``{{ ... }}`` with the trim markers ``{{-`` and ``-}}``, comments ``{{/* */}}``;
- ``if``/``else if``/``else``/``end``, ``range`` (over lists, maps and integers; ``$i, $v :=``;
  ``else``; ``break``/``continue``), ``with``/``else with``;
- pipelines with ``|``, parentheses, variables (``$``, ``$x :=``, ``$x =``), fields (``.A.B``,
  ``$x.A``), string, raw-string, number, boolean and nil literals;
- the builtins ``and or not eq ne lt le gt ge len index slice print printf println`` and Ollama's
  own functions ``json``, ``currentDate`` and ``toTypeScriptType``.

Values follow Go's rules where templates can see them: truthiness (false, 0, nil, empty string,
list or map are false), ``and``/``or`` returning an operand and stopping early, ``eq`` comparing
its first operand with each of the others, printing (``<no value>`` for a missing map key, Go's
float formatting). Templates use only maps, lists, strings, numbers and booleans here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed (Go's text/template error)."""


NO_VALUE = object()  # what a missing map key evaluates to (printed "<no value>")


# --- lexer ---------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?))
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    spaced: bool = False  # whitespace before it (a field right after ")" or "$x" chains on)


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        value = json.loads(text if text.startswith('"') else '"' + text[1:-1] + '"')
    except ValueError:
        value = text[1:-1].encode().decode("unicode_escape")
    return str(value)


def _tokens(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    spaced = False
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"unexpected {source[pos]!r} in command")
        kind = match.lastgroup or ""
        text = match.group()
        pos = match.end()
        if kind == "space":
            spaced = True
            continue
        tokens.append(Token(kind, text, spaced))
        spaced = False
    return tokens


@dataclass(frozen=True)
class _Action:
    body: str
    trim_left: bool
    trim_right: bool


def _split(source: str) -> list[str | _Action]:
    """Text and actions, with the trim markers applied to the text around them."""
    parts: list[str | _Action] = []
    pos = 0
    while True:
        start = source.find("{{", pos)
        if start < 0:
            parts.append(source[pos:])
            break
        parts.append(source[pos:start])
        inner = start + 2
        trim_left = source.startswith(("- ", "-\t", "-\n", "-\r"), inner)
        if trim_left:
            inner += 2
        if source.startswith("/*", inner):
            close = source.find("*/", inner)
            end = source.find("}}", close) if close >= 0 else -1
            if end < 0:
                raise TemplateError("unclosed comment")
            trim_right = source[close + 2 : end].strip() == "-"
            parts.append(_Action("/*comment*/", trim_left, trim_right))
            pos = end + 2
            continue
        end = _action_end(source, inner)
        body = source[inner:end]
        trim_right = body.endswith((" -", "\t-", "\n-"))
        if trim_right:
            body = body[:-2]
        parts.append(_Action(body, trim_left, trim_right))
        pos = end + 2
    # apply the trim markers to neighbouring text
    for index, part in enumerate(parts):
        if not isinstance(part, _Action):
            continue
        if part.trim_left and index > 0 and isinstance(parts[index - 1], str):
            parts[index - 1] = str(parts[index - 1]).rstrip(" \t\r\n")
        if part.trim_right and index + 1 < len(parts) and isinstance(parts[index + 1], str):
            parts[index + 1] = str(parts[index + 1]).lstrip(" \t\r\n")
    return parts


def _action_end(source: str, pos: int) -> int:
    """The index of the ``}}`` closing an action, skipping quoted strings."""
    quote = ""
    index = pos
    while index < len(source):
        char = source[index]
        if quote:
            if char == "\\" and quote != "`":
                index += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif source.startswith("}}", index):
            return index
        index += 1
    raise TemplateError("unclosed action")


# --- parse tree ----------------------------------------------------------------------------------
@dataclass
class Field:
    names: list[str]


@dataclass
class Variable:
    name: str
    names: list[str] = field(default_factory=list)


@dataclass
class Dot:
    pass


@dataclass
class Literal:
    value: Any


@dataclass
class Identifier:
    name: str


@dataclass
class Chain:
    node: Any
    names: list[str]


@dataclass
class Command:
    args: list[Any]


@dataclass
class Pipeline:
    commands: list[Command]
    declare: list[str] = field(default_factory=list)
    assign: bool = False


@dataclass
class Text:
    text: str


@dataclass
class ActionNode:
    pipe: Pipeline


@dataclass
class Branch:
    kind: str  # if, range, with
    pipe: Pipeline
    body: list[Any]
    otherwise: list[Any] | None = None


@dataclass
class Control:
    kind: str  # break, continue


class _Parser:
    def __init__(self, source: str) -> None:
        self.parts = _split(source)
        self.index = 0

    def parse(self) -> list[Any]:
        nodes, end = self._list()
        if end is not None:
            raise TemplateError(f"unexpected {{{{{end}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], str | None]:
        """Nodes up to an ``end``/``else`` action (returned as the second item) or the end."""
        nodes: list[Any] = []
        while self.index < len(self.parts):
            part = self.parts[self.index]
            self.index += 1
            if isinstance(part, str):
                if part:
                    nodes.append(Text(part))
                continue
            body = part.body.strip()
            if body == "/*comment*/":
                continue
            tokens = _tokens(body)
            if not tokens:
                raise TemplateError("missing value for command")
            head = tokens[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                return nodes, body
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                nodes.append(self._branch(head.text, tokens[1:]))
            elif head.kind == "ident" and head.text in ("break", "continue"):
                nodes.append(Control(head.text))
            elif head.kind == "ident" and head.text in ("define", "template", "block"):
                raise TemplateError(f"{head.text} is not supported by the stand-in")
            else:
                nodes.append(ActionNode(_PipeParser(tokens).pipeline()))
        return nodes, None

    def _branch(self, kind: str, tokens: list[Token]) -> Branch:
        pipe = _PipeParser(tokens).pipeline()
        body, end = self._list()
        branch = Branch(kind, pipe, body)
        if end is None:
            raise TemplateError(f"unexpected EOF in {kind}")
        if end == "end":
            return branch
        rest = _tokens(end)[1:]  # after "else"
        if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
            # "else if" / "else with": a nested branch that shares this one's end
            branch.otherwise = [self._branch(rest[0].text, rest[1:])]
            return branch
        if rest:
            raise TemplateError(f"unexpected {rest[0].text!r} after else")
        branch.otherwise, end = self._list()
        if end != "end":
            raise TemplateError(f"expected end; found {end}")
        return branch


class _PipeParser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> Token:
        token = self._peek()
        if token is None:
            raise TemplateError("unexpected end of command")
        self.pos += 1
        return token

    def pipeline(self, closing: str | None = None) -> Pipeline:
        declare: list[str] = []
        assign = False
        # $x := / $x = / $i, $v :=
        save = self.pos
        names: list[str] = []
        while (token := self._peek()) is not None and token.kind == "variable":
            names.append(self._next().text)
            after = self._peek()
            if after is not None and after.kind == "comma" and len(names) == 1:
                self._next()
                continue
            if after is not None and after.kind in ("declare", "assign"):
                self._next()
                declare, assign = names, after.kind == "assign"
            break
        if not declare:
            self.pos = save
        commands = [self._command(closing)]
        while (token := self._peek()) is not None and token.kind == "pipe":
            self._next()
            commands.append(self._command(closing))
        if closing is None and self._peek() is not None:
            raise TemplateError(f"unexpected {self._peek()}")
        return Pipeline(commands, declare, assign)

    def _command(self, closing: str | None) -> Command:
        args: list[Any] = []
        while (token := self._peek()) is not None and token.kind not in ("pipe", closing):
            args.append(self._operand())
        if not args:
            raise TemplateError("missing value for command")
        return Command(args)

    def _operand(self) -> Any:
        token = self._next()
        node: Any
        if token.kind == "field":
            node = Field(token.text.split(".")[1:])
        elif token.kind == "variable":
            node = Variable(token.text)
        elif token.kind == "dot":
            node = Dot()
        elif token.kind in ("string", "raw"):
            node = Literal(_unquote(token.text))
        elif token.kind == "char":
            node = Literal(ord(_unquote(token.text)))
        elif token.kind == "number":
            text = token.text.replace("_", "")
            try:
                node = Literal(int(text, 0))
            except ValueError:
                node = Literal(float(text))
        elif token.kind == "ident":
            constants = {"true": True, "false": False, "nil": None}
            node = Literal(constants[token.text]) if token.text in constants else None
            if node is None:
                node = Identifier(token.text)
        elif token.kind == "lparen":
            node = self.pipeline(closing="rparen")
            if self._next().kind != "rparen":
                raise TemplateError("unclosed left paren")
        else:
            raise TemplateError(f"unexpected {token.text!r} in operand")
        # chained fields: $x.A.B, (pipeline).A
        follow = self._peek()
        chains = isinstance(node, Variable | Pipeline)
        if follow is not None and follow.kind == "field" and not follow.spaced and chains:
            self._next()
            names = follow.text.split(".")[1:]
            if isinstance(node, Variable) and not node.names:
                node = Variable(node.name, names)
            else:
                node = Chain(node, names)
        return node


# --- identifiers (Ollama's template.Identifiers) -------------------------------------------------
def identifiers(nodes: Sequence[Any]) -> list[str]:
    """Field and variable names the template uses, as Ollama's ``Identifiers`` walks them (the
    pipes and lists of actions and branches; parenthesised pipelines; not chains)."""
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ActionNode):
            names += _pipe_identifiers(node.pipe)
        elif isinstance(node, Branch):
            names += _pipe_identifiers(node.pipe)
            names += identifiers(node.body)
            names += identifiers(node.otherwise or [])
    return names


def _pipe_identifiers(pipe: Pipeline) -> list[str]:
    names: list[str] = []
    for command in pipe.commands:
        for arg in command.args:
            if isinstance(arg, Field):
                names += arg.names
            elif isinstance(arg, Variable):
                names += [arg.name, *arg.names]
            elif isinstance(arg, Pipeline):
                names += _pipe_identifiers(arg)
    return names


# --- values ---------------------------------------------------------------------------------
def truth(value: Any) -> bool:
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def go_float(value: float) -> str:
    """A float64 as Go's fmt prints it with %v and %#v (strconv's shortest 'g': an exponent from
    1e+06 on and below 1e-04, at least two exponent digits)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    text = repr(abs(value))  # Python's repr is the shortest round-trip form, as Go's
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp_text) if exp_text else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        tail = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{tail}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_quote(text: str) -> str:
    """A string as Go's %#v (strconv.Quote) writes it: double quotes, Go escapes, printable
    characters (also non-ASCII ones) as they are."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_string(value: Any) -> str:
    """A value as text/template prints it (fmt.Print)."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    return any(first == other for other in others)


def _ordered(name: str, check: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        numeric = isinstance(a, int | float) and isinstance(b, int | float)
        if not numeric and not (isinstance(a, str) and isinstance(b, str)):
            raise TemplateError(f"error calling {name}: incompatible types for comparison")
        return check(a, b)

    return compare


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list | tuple | dict):
        return len(value)
    raise TemplateError(f"error calling len: len of type {type(value).__name__}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, NO_VALUE)
        elif isinstance(value, list | tuple | str):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError("error calling index: can't index item")
    return value


def _slice(value: Any, *bounds: int) -> Any:
    if not isinstance(value, list | tuple | str):
        raise TemplateError("error calling slice: can't slice item")
    if len(bounds) > 2:
        raise TemplateError("error calling slice: too many slice indexes")
    start = bounds[0] if bounds else 0
    stop = bounds[1] if len(bounds) > 1 else len(value)
    if not 0 <= start <= stop <= len(value):
        raise TemplateError(f"error calling slice: index out of range: {start}")
    return value[start:stop]


_PRINTF = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([vsdqfgtxX%])")


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def one(match: re.Match[str]) -> str:
        verb = match.group(4)
        if verb == "%":
            return "%"
        value = next(values, NO_VALUE)
        if value is NO_VALUE:
            return f"%!{verb}(MISSING)"
        if verb == "q":
            return json.dumps(str(value), ensure_ascii=False)
        if verb in "fg" and isinstance(value, int | float):
            precision = int(match.group(3) or 6)
            return f"{value:.{precision}{verb}}"
        if verb in "xX" and isinstance(value, int):
            return format(value, verb)
        text = go_string(value)
        width = match.group(2)
        if width and width != "*":
            flags = match.group(1) or ""
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width))
        return text

    return _PRINTF.sub(one, fmt)


def _print(*args: Any) -> str:
    # fmt.Sprint: spaces only between operands when neither is a string
    out = ""
    for index, arg in enumerate(args):
        if index and not isinstance(arg, str) and not isinstance(args[index - 1], str):
            out += " "
        out += go_string(arg)
    return out


def _json(value: Any) -> str:
    if value is NO_VALUE:
        value = None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


BUILTINS: dict[str, Callable[..., Any]] = {
    "not": lambda value: not truth(value),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered("lt", lambda a, b: a < b),
    "le": _ordered("le", lambda a, b: a <= b),
    "gt": _ordered("gt", lambda a, b: a > b),
    "ge": _ordered("ge", lambda a, b: a >= b),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": _printf,
    "println": lambda *args: " ".join(go_string(a) for a in args) + "\n",
    # Ollama's own (template/template.go funcs)
    "json": _json,
    "currentDate": lambda *_: date.today().isoformat(),
    "toTypeScriptType": lambda *_: "any",
}


class _BreakError(Exception):
    pass


class _ContinueError(Exception):
    pass


@dataclass
class _Scope:
    variables: list[tuple[str, Any]]

    def get(self, name: str) -> Any:
        for key, value in reversed(self.variables):
            if key == name:
                return value
        raise TemplateError(f'undefined variable "{name}"')

    def set(self, name: str, value: Any) -> None:
        for index in range(len(self.variables) - 1, -1, -1):
            if self.variables[index][0] == name:
                self.variables[index] = (name, value)
                return
        raise TemplateError(f'undefined variable "{name}"')


def _field(value: Any, names: Sequence[str]) -> Any:
    for name in names:
        if value is None or value is NO_VALUE:
            raise TemplateError(f"nil pointer evaluating {name}")
        if isinstance(value, Mapping):
            value = value.get(name, NO_VALUE)
        else:
            raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
    return value


class Template:
    """A parsed template; ``execute(data)`` renders it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = _Parser(source).parse()

    def identifiers(self) -> list[str]:
        return identifiers(self.nodes)

    def execute(self, data: Any, nodes: Sequence[Any] | None = None) -> str:
        out: list[str] = []
        scope = _Scope([("$", data)])
        try:
            self._walk(self.nodes if nodes is None else nodes, data, scope, out)
        except (_BreakError, _ContinueError):
            raise TemplateError("break or continue outside range") from None
        return "".join(out)

    # execution ------------------------------------------------------------------------------------
    def _walk(self, nodes: Sequence[Any], dot: Any, scope: _Scope, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                out.append(node.text)
            elif isinstance(node, ActionNode):
                value = self._pipeline(node.pipe, dot, scope)
                if not node.pipe.declare:
                    out.append(go_string(value))
            elif isinstance(node, Branch):
                self._branch(node, dot, scope, out)
            elif isinstance(node, Control):
                raise _BreakError if node.kind == "break" else _ContinueError

    def _branch(self, node: Branch, dot: Any, scope: _Scope, out: list[str]) -> None:
        mark = len(scope.variables)
        try:
            if node.kind == "range":
                self._range(node, dot, scope, out)
                return
            value = self._pipeline(node.pipe, dot, scope)
            if truth(value):
                self._walk(node.body, value if node.kind == "with" else dot, scope, out)
            elif node.otherwise is not None:
                self._walk(node.otherwise, dot, scope, out)
        finally:
            del scope.variables[mark:]

    def _range(self, node: Branch, dot: Any, scope: _Scope, out: list[str]) -> None:
        pipe = Pipeline(node.pipe.commands)
        value = self._pipeline(pipe, dot, scope)
        items: Iterator[tuple[Any, Any]]
        if value is None or value is NO_VALUE:
            items = iter(())
        elif isinstance(value, Mapping):
            items = ((k, value[k]) for k in sorted(value))
        elif isinstance(value, list | tuple):
            items = iter(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = ((i, i) for i in range(value))
        else:
            raise TemplateError(f"range can't iterate over {go_string(value)}")
        ran = False
        mark = len(scope.variables)
        for key, item in items:
            ran = True
            del scope.variables[mark:]
            names = node.pipe.declare
            if len(names) == 1:
                scope.variables.append((names[0], item))
            elif len(names) == 2:
                scope.variables += [(names[0], key), (names[1], item)]
            try:
                self._walk(node.body, item, scope, out)
            except _BreakError:
                break
            except _ContinueError:
                continue
        del scope.variables[mark:]
        if not ran and node.otherwise is not None:
            self._walk(node.otherwise, dot, scope, out)

    def _pipeline(self, pipe: Pipeline, dot: Any, scope: _Scope) -> Any:
        value: Any = NO_VALUE
        for index, command in enumerate(pipe.commands):
            final = (value,) if index > 0 else ()
            value = self._command(command, dot, scope, final)
        for name in pipe.declare[-1:] if len(pipe.declare) == 1 else pipe.declare:
            if pipe.assign:
                scope.set(name, value)
            else:
                scope.variables.append((name, value))
        return value

    def _command(self, command: Command, dot: Any, scope: _Scope, final: tuple[Any, ...]) -> Any:
        head, *rest = command.args
        if isinstance(head, Identifier):
            if head.name in ("and", "or"):
                return self._logic(head.name, [*rest], dot, scope, final)
            function = BUILTINS.get(head.name)
            if function is None:
                raise TemplateError(f'function "{head.name}" not defined')
            args = [self._arg(a, dot, scope) for a in rest] + list(final)
            try:
                return function(*args)
            except TypeError as exc:
                raise TemplateError(f"error calling {head.name}: {exc}") from None
        if rest or final:
            raise TemplateError("can't give argument to non-function")
        return self._arg(head, dot, scope)

    def _logic(
        self, name: str, args: list[Any], dot: Any, scope: _Scope, final: tuple[Any, ...]
    ) -> Any:
        if not args and not final:
            raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        thunks: list[Callable[[], Any]] = [lambda a=a: self._arg(a, dot, scope) for a in args]
        thunks += [lambda v=v: v for v in final]
        for thunk in thunks:
            value = thunk()
            if (name == "and") != truth(value):
                return value
        return value

    def _arg(self, node: Any, dot: Any, scope: _Scope) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Field):
            return _field(dot, node.names)
        if isinstance(node, Variable):
            return _field(scope.get(node.name), node.names)
        if isinstance(node, Pipeline):
            return self._pipeline(node, dot, scope)
        if isinstance(node, Chain):
            return _field(self._arg(node.node, dot, scope), node.names)
        if isinstance(node, Identifier):
            return self._command(Command([node]), dot, scope, ())
        raise TemplateError(f"cannot evaluate {node!r}")
