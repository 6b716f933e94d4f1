"""edgeai.appliance.gateway_llm_policy / gateway_key_expiry: the per-key LLM policy for njs."""

from __future__ import annotations

import hashlib
import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.llm import (
    gateway_key_expiry,
    gateway_llm_policy,
    model_pattern_regex,
)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("gemma3", ["gemma3:latest"], ["gemma3:270m", "gemma3x:latest"]),
        ("gemma3:*", ["gemma3:270m", "gemma3:latest"], ["gemma:2b", "xgemma3:1b"]),
        ("gemma3:270m", ["gemma3:270m"], ["gemma3:270m-q8", "gemma3:27"]),
        ("qwen?:*", ["qwen3:8b"], ["qwen:8b", "qwen25:8b"]),
        ("library/gemma3", ["library/gemma3:latest"], ["gemma3:latest"]),
        ("*", ["anything:at-all"], []),
        ("llama3.2:1b", ["llama3.2:1b"], ["llama3x2:1b"]),
    ],
)
def test_globs_become_anchored_regexes(pattern: str, matches: list[str], misses: list[str]) -> None:
    rx = re.compile(model_pattern_regex(pattern))
    for name in matches:
        assert rx.match(name), name
    for name in misses:
        assert not rx.match(name), name


def test_policy_for_keys_that_carry_one() -> None:
    keys = [
        {"name": "admin", "key": "a" * 32, "role": "admin"},
        {"name": "app", "key": "b" * 32, "role": "user", "models": ["gemma3:*"]},
        {"name": "team", "key": "c" * 32, "role": "user", "token_budget": {"tokens": 500}},
    ]
    policy = gateway_llm_policy(keys)
    assert set(policy) == {"app", "team"}
    assert policy["app"] == {"models": ["^gemma3:.*$"]}
    assert policy["team"] == {"budget": {"tokens": 500, "per": "day"}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"models": "gemma3"}, "models must be a non-empty list"),
        ({"models": []}, "models must be a non-empty list"),
        ({"models": ["gemma 3"]}, "model pattern 'gemma 3'"),
        ({"token_budget": {"tokens": 0}}, "token_budget.tokens must be a whole number"),
        ({"token_budget": {"tokens": "9"}}, "token_budget.tokens must be a whole number"),
        ({"token_budget": {"tokens": 9, "per": "week"}}, "token_budget.per must be one of"),
    ],
)
def test_bad_policies_name_the_key(entry: dict[str, object], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message) as failure:
        gateway_llm_policy([{"name": "app", "key": "k" * 32, **entry}])
    assert "'app'" in str(failure.value) or "model pattern" in message


def test_expiry_by_key_hash_never_the_key() -> None:
    key = "s3cret-" * 6
    table = gateway_key_expiry(
        [
            {"name": "old", "key": key, "expires": "2024-01-31"},
            {"name": "precise", "key": "p" * 32, "expires": "2030-06-01T12:30:00Z"},
            {"name": "forever", "key": "f" * 32},
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert table[digest] == [1706659200000, "2024-01-31"]
    assert table[hashlib.sha256(b"p" * 32).hexdigest()][0] == 1906547400000
    assert len(table) == 2
    assert key not in repr(table)


@pytest.mark.parametrize("value", ["31.01.2024", "2024-02-30", "2024-01-31 10:00", "tomorrow"])
def test_bad_expiry_names_the_key(value: str) -> None:
    with pytest.raises(AnsibleFilterError, match="entry 'old': expires"):
        gateway_key_expiry([{"name": "old", "key": "k" * 32, "expires": value}])
