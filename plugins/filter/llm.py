# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the gateway's per-key LLM policy: model allow-lists, key expiry, token budgets."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from ansible.errors import AnsibleFilterError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$")
_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9._:/*?-]{1,200}$")
BUDGET_WINDOWS = ("hour", "day", "month")


def model_pattern_regex(pattern: str) -> str:
    """An anchored regular expression for an Ollama model glob (``*`` any run, ``?`` one character).

    Ollama reads ``name`` as ``name:latest``: a pattern without a tag and without a wildcard
    gets ``:latest`` as well, so ``gemma3`` allows ``gemma3`` and ``gemma3:latest``; ``gemma3:*``
    allows every tag.
    """
    text = str(pattern).strip()
    if not _MODEL_PATTERN.match(text):
        raise AnsibleFilterError(
            f"model pattern {pattern!r}: use model names with * and ? as wildcards"
        )
    if ":" not in text.rsplit("/", 1)[-1] and "*" not in text and "?" not in text:
        text += ":latest"
    parts = [re.escape(c) if c not in "*?" else (".*" if c == "*" else ".") for c in text]
    return "^" + "".join(parts) + "$"


def key_expiry_instant(value: Any, name: str = "expires") -> dt.datetime:
    """The UTC instant a key is refused from: a date means 00:00 UTC of that day."""
    text = str(value).strip()
    try:
        if _DATE.match(text):
            return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)  # noqa: UP017 (Python < 3.11 controllers)
        if _INSTANT.match(text):
            fmt = "%Y-%m-%dT%H:%M:%SZ" if text.count(":") == 2 else "%Y-%m-%dT%H:%MZ"
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)  # noqa: UP017 (Python < 3.11 controllers)
    except ValueError:
        pass
    raise AnsibleFilterError(
        f"{name}: {value!r} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
    )


def gateway_key_expiry(keys: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """SHA-256 of each key with ``expires`` -> [ms since the epoch, the configured text]."""
    out: dict[str, list[Any]] = {}
    for entry in keys:
        if entry.get("expires") in (None, ""):
            continue
        label = f"gateway_api_keys entry '{entry.get('name')}': expires"
        instant = key_expiry_instant(entry["expires"], label)
        digest = hashlib.sha256(str(entry["key"]).encode()).hexdigest()
        out[digest] = [int(instant.timestamp() * 1000), str(entry["expires"]).strip()]
    return out


def gateway_llm_policy(keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Key name -> {models: [regex], budget: {tokens, per}} for the keys that carry a policy."""
    out: dict[str, dict[str, Any]] = {}
    for entry in keys:
        name = str(entry.get("name"))
        policy: dict[str, Any] = {}
        models = entry.get("models")
        if models is not None:
            if isinstance(models, str) or not isinstance(models, list) or not models:
                raise AnsibleFilterError(
                    f"gateway_api_keys entry '{name}': models must be a non-empty list of patterns"
                )
            policy["models"] = [model_pattern_regex(m) for m in models]
        budget = entry.get("token_budget")
        if budget is not None:
            tokens = budget.get("tokens") if isinstance(budget, dict) else None
            per = budget.get("per", "day") if isinstance(budget, dict) else None
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
                raise AnsibleFilterError(
                    f"gateway_api_keys entry '{name}': token_budget.tokens must be a whole "
                    "number >= 1"
                )
            if per not in BUDGET_WINDOWS:
                raise AnsibleFilterError(
                    f"gateway_api_keys entry '{name}': token_budget.per must be one of "
                    f"{', '.join(BUDGET_WINDOWS)}"
                )
            policy["budget"] = {"tokens": tokens, "per": per}
        if policy:
            out[name] = policy
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gateway_llm_policy": gateway_llm_policy,
            "gateway_key_expiry": gateway_key_expiry,
        }
