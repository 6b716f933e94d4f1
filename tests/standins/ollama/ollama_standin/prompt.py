"""Prompts as Ollama 0.12.6 renders them: through the model's TEMPLATE, never a format of our own.

- ``parse`` is template/template.go ``Parse``: a template that names neither ``.Messages`` nor
  ``.Response`` gets ``{{ .Response }}`` appended. A model without a template layer has
  ``DEFAULT_TEMPLATE`` (``{{ .Prompt }}``, server/images.go ``GetModel``).
- ``render`` is template/template.go ``Execute`` as server/prompt.go ``renderPrompt`` calls it:
  consecutive messages of one role are merged (``collate``); a template that uses ``.Messages``
  gets them all with ``.System`` (every system message joined by a blank line); any other
  template runs once per system/user/assistant turn with ``.System``, ``.Prompt`` and
  ``.Response``, and the last turn is cut after its ``.Response``.
- ``generate_messages`` and ``chat_messages`` build the message list as server/routes.go
  ``GenerateHandler`` and ``ChatHandler`` do (the model's SYSTEM where the request gives none).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .gotemplate import (
    ActionNode,
    Branch,
    Command,
    Field,
    Pipeline,
    Template,
    TemplateError,
)

DEFAULT_TEMPLATE = "{{ .Prompt }}"
_RESPONSE = ActionNode(Pipeline([Command([Field(["Response"])])]))


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_value(self) -> dict[str, Any]:
        """The fields of Ollama's api.Message a template can read."""
        return {
            "Role": self.role,
            "Content": self.content,
            "Thinking": "",
            "Images": None,
            "ToolCalls": None,
            "ToolName": "",
        }


class PromptTemplate:
    """A model's template, parsed as Ollama parses it."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self.template = Template(source)
        except TemplateError as exc:
            raise TemplateError(f"template: :{exc}") from None
        self.vars = sorted({name.lower() for name in self.template.identifiers()})
        if "messages" not in self.vars and "response" not in self.vars:
            self.template.nodes.append(_RESPONSE)

    def execute(self, messages: Sequence[Message]) -> str:
        system, collated = collate(messages)
        values = {"Tools": None, "Think": False, "ThinkLevel": "", "IsThinkSet": False}
        if "messages" in self.vars:
            data = {
                "System": system,
                "Messages": [m.as_value() for m in collated],
                "Response": "",
                **values,
            }
            return self.template.execute(data)
        out: list[str] = []
        turn = {"System": "", "Prompt": "", "Response": ""}

        def flush() -> None:
            out.append(self.template.execute({**turn, **values}))
            turn.update(System="", Prompt="", Response="")

        for message in collated:
            if message.role == "system":
                if turn["Prompt"] or turn["Response"]:
                    flush()
                turn["System"] = message.content
            elif message.role == "user":
                if turn["Response"]:
                    flush()
                turn["Prompt"] = message.content
            elif message.role == "assistant":
                turn["Response"] = message.content
        out.append(self.template.execute({**turn, **values}, _cut_after_response(self.template)))
        return "".join(out)


def parse(source: str | None) -> PromptTemplate:
    return PromptTemplate(source if source else DEFAULT_TEMPLATE)


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """Merge consecutive messages of one role (not tool messages); collect the system ones."""
    system: list[str] = []
    collated: list[Message] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
        if collated and collated[-1].role == message.role and message.role != "tool":
            previous = collated[-1]
            collated[-1] = Message(previous.role, previous.content + "\n\n" + message.content)
        else:
            collated.append(message)
    return "\n\n".join(system), collated


def _cut_after_response(template: Template) -> list[Any]:
    """The template's nodes with everything after the first ``.Response`` field removed, walked
    in the order of Ollama's ``deleteNode`` (branch conditions are not looked at)."""
    state = {"cut": False}

    def hits(node: Any) -> bool:
        if isinstance(node, Field) and "Response" in node.names:
            state["cut"] = True
            return False
        return state["cut"]

    def walk_list(nodes: list[Any]) -> list[Any]:
        kept = []
        for node in nodes:
            result = walk(node)
            if result is not None:
                kept.append(result)
        return kept

    def walk(node: Any) -> Any:
        if hits(node):
            return None
        if isinstance(node, Branch):
            node.body = walk_list(node.body)
            if node.otherwise is not None:
                node.otherwise = walk_list(node.otherwise)
        elif isinstance(node, ActionNode):
            pipe = walk_pipe(node.pipe)
            if pipe is None:
                return None
            node.pipe = pipe
        elif isinstance(node, Pipeline):
            return walk_pipe(node)
        return node

    def walk_pipe(pipe: Pipeline) -> Pipeline | None:
        if hits(pipe):
            return None
        commands = []
        for command in pipe.commands:
            args = [a for a in command.args if walk(a) is not None]
            if not args:
                return None
            command.args = args
            commands.append(command)
        if not commands:
            return None
        pipe.commands = commands
        return pipe

    return walk_list(copy.deepcopy(template.nodes))


def generate_messages(prompt: str, system: str | None, model_system: str) -> list[Message]:
    """/api/generate: the request's system prompt, else the model's, then the prompt."""
    messages = []
    if system:
        messages.append(Message("system", system))
    elif model_system:
        messages.append(Message("system", model_system))
    messages.append(Message("user", prompt))
    return messages


def chat_messages(messages: Sequence[tuple[str, str]], model_system: str) -> list[Message]:
    """/api/chat and /v1/chat/completions: the model's SYSTEM in front unless the first message
    is a system message."""
    result = [Message(role, content) for role, content in messages]
    if model_system and (not result or result[0].role != "system"):
        result.insert(0, Message("system", model_system))
    return result


__all__ = [
    "DEFAULT_TEMPLATE",
    "Message",
    "PromptTemplate",
    "TemplateError",
    "chat_messages",
    "collate",
    "generate_messages",
    "parse",
]
