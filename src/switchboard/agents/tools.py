"""Function tools declared in Python: ``@tool`` turns a function into a ``Tool`` the model may call.

The JSON schema comes from the type hints (``str``, ``int``, ``float``, ``bool``,
``Literal``, ``Enum``, ``list[...]``, ``dict``, ``X | None``; describe a parameter with
``Annotated[str, "what it is"]``) or is given explicitly. The tool's description is its
docstring: write it for the model (what the tool does, when to use it). A parameter
annotated ``ToolContext`` is not shown to the model; it receives the call's id, its state
and an idempotency key.

Why the idempotency key: a caller who barges in cancels the turn, and the model may ask for
the same action again in the next one. A side-effecting tool (booking, payment) keyed on
``ToolContext.idempotency_key`` (call id + tool name + canonical arguments) can recognise
the repeat and answer without acting twice.

A tool may also return an ``Action`` (``Transfer``, ``EndCall``...): the agent yields it, so
the model can hand the call over or hang up after saying goodbye; the model is told "done".

Failures never crash a call: bad arguments, a tool that raises or returns something that
cannot be serialised all become ``ToolResult(successful=False)`` with text the model can
read and recover from. Sync tools run in a worker thread so a blocking one cannot stall
other calls; async tools run on the loop.
"""

from __future__ import annotations

import asyncio
import collections.abc
import enum
import hashlib
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin, overload

import msgspec

from switchboard.agents.base import Action
from switchboard.log import get_logger

#: Results longer than this are cut before they reach the model (Retell's cap for HTTP tools).
MAX_RESULT_CHARS = 15_000

_log = get_logger("switchboard.tools")
_encoder = msgspec.json.Encoder(order="sorted")


class ToolError(ValueError):
    """A tool that cannot be declared or imported as written."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool knows about the call it runs in.

    ``state`` is the call's ``Turn.state``: changes persist with the call (JSON values only).
    """

    call_id: str
    tool_call_id: str
    idempotency_key: str
    state: dict[str, Any]
    dynamic_variables: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the model reads back (``content``) and any action the tool asked for."""

    content: str
    successful: bool
    action: Action | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the model may invoke. Build one with ``@tool``, not directly.

    ``say`` is a holding line spoken before the tool runs ("One moment while I check.").
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    context_param: str | None = None
    say: str | None = None
    #: The signature the model's arguments are bound against (without the context).
    signature: inspect.Signature = field(
        default_factory=inspect.Signature, repr=False, compare=False
    )

    def schema(self) -> dict[str, Any]:
        """The entry for the ``tools`` list of a chat completion request."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    async def run(self, arguments: str, context: ToolContext) -> ToolResult:
        """Parse the model's JSON arguments and run the tool; failures become results."""
        try:
            bound = self.signature.bind(**parse_arguments(arguments))
        except (ValueError, TypeError) as exc:
            return ToolResult(f"error: invalid arguments for {self.name}: {exc}", False)
        kwargs: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[name] = value
        if self.context_param is not None:
            kwargs[self.context_param] = context
        try:
            if inspect.iscoroutinefunction(self.fn):
                value = await self.fn(**kwargs)
            else:
                value = await asyncio.to_thread(self.fn, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            _log.warning("tool_failed", tool=self.name, call_id=context.call_id, error=repr(exc))
            return ToolResult(f"error: {self.name} failed: {exc or type(exc).__name__}", False)
        if isinstance(value, Action):
            return ToolResult(f"done: {type(value).__name__}", True, value)
        return ToolResult(_as_text(value), True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (tests, composition)."""
        return self.fn(*args, **kwargs)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    say: str | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    say: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a tool: ``@tool``, or ``@tool(name=, description=, parameters=, say=)``."""

    def build(func: Callable[..., Any]) -> Tool:
        return make_tool(func, name=name, description=description, parameters=parameters, say=say)

    return build(fn) if fn is not None else build


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    say: str | None = None,
) -> Tool:
    """Build a ``Tool`` from a function (what ``@tool`` does)."""
    tool_name = name or getattr(fn, "__name__", "")
    if not tool_name or not all(c.isalnum() or c in "_-" for c in tool_name):
        raise ToolError(f"tool name {tool_name!r} must be letters, digits, '_' or '-'")
    if not callable(fn):
        raise ToolError(f"tool {tool_name}: not callable")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
        signature = inspect.signature(fn)
    except (NameError, TypeError, ValueError) as exc:
        raise ToolError(f"tool {tool_name}: cannot read its signature: {exc}") from exc
    context_param: str | None = None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        hint = hints.get(param.name)
        if hint is ToolContext:
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolError(f"tool {tool_name}: parameter {param.name!r} is positional-only")
        if parameters is not None:
            continue
        if hint is None:
            raise ToolError(f"tool {tool_name}: parameter {param.name!r} needs a type hint")
        try:
            properties[param.name] = json_schema(hint)
        except ToolError as exc:
            raise ToolError(f"tool {tool_name}: parameter {param.name!r}: {exc}") from None
        if param.default is param.empty:
            required.append(param.name)
    if parameters is not None:
        if parameters.get("type") != "object":
            raise ToolError(f"tool {tool_name}: explicit parameters must be a JSON object schema")
        schema = dict(parameters)
    else:
        schema = {"type": "object", "properties": properties, "required": required}
    doc = description if description is not None else inspect.getdoc(fn) or ""
    summary = "\n".join(" ".join(p.split()) for p in doc.strip().split("\n\n"))
    model_facing = signature.replace(
        parameters=[
            p
            for p in signature.parameters.values()
            if p.name != context_param and p.kind is not p.VAR_POSITIONAL
        ]
    )
    return Tool(
        name=tool_name,
        description=summary,
        parameters=schema,
        fn=fn,
        context_param=context_param,
        say=say,
        signature=model_facing,
    )


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of one parameter's type hint."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extras = get_args(hint)
        schema = json_schema(base)
        notes = [e for e in extras if isinstance(e, str)]
        if notes:
            schema["description"] = " ".join(notes)
        return schema
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return json_schema(options[0])
        return {"anyOf": [json_schema(a) for a in options]}
    if origin is Literal:
        values = list(get_args(hint))
        return {"type": _json_type(type(values[0])), "enum": values}
    if origin in (list, tuple, set, frozenset) or _is_abc(origin, "Sequence"):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
    if origin is dict or _is_abc(origin, "Mapping") or hint is dict:
        return {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        return {"type": _json_type(type(values[0])), "enum": values}
    if hint is list:
        return {"type": "array"}
    if isinstance(hint, type):
        return {"type": _json_type(hint)}
    raise ToolError(f"unsupported type {hint!r}")


def _is_abc(origin: Any, name: str) -> bool:
    target = getattr(collections.abc, name)
    return isinstance(origin, type) and issubclass(origin, target)


def _json_type(kind: type) -> str:
    # bool before int: bool is a subclass of int.
    for python, json in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if issubclass(kind, python):
            return json
    raise ToolError(f"unsupported type {kind.__name__}")


def parse_arguments(arguments: str) -> dict[str, Any]:
    """The model's arguments as a dict (``""`` means none); ``ValueError`` if not a JSON object."""
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError as exc:
        raise ValueError(f"arguments are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("arguments must be a JSON object")
    return value


def canonical_arguments(arguments: str) -> str:
    """Arguments re-encoded with sorted keys and no spaces, so equal requests compare equal."""
    try:
        return _encoder.encode(parse_arguments(arguments)).decode()
    except ValueError:
        return arguments.strip()


def idempotency_key(call_id: str, tool_name: str, arguments: str) -> str:
    """A stable key for "this call asked this tool to do this" (see module docstring)."""
    material = "\x1f".join((call_id, tool_name, canonical_arguments(arguments)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def load_tool(reference: str) -> Tool:
    """Import ``"package.module:name"``: a ``Tool``, or a plain function made into one."""
    module_name, colon, attribute = reference.partition(":")
    if not colon or not module_name or not attribute:
        raise ToolError(f"{reference!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolError(f"{reference!r}: cannot import {module_name}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ToolError(f"{reference!r}: {module_name} has no {attribute!r}") from None
    if isinstance(target, Tool):
        return target
    if callable(target):
        return make_tool(target)
    raise ToolError(f"{reference!r} is neither a tool nor a function")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "done"
    else:
        try:
            text = msgspec.json.encode(value).decode()
        except (TypeError, msgspec.EncodeError):
            text = str(value)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]
