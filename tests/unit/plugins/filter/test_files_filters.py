"""edgeai.appliance.file_specs: entries for the files module from plain lists."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.files import file_specs


def test_directories_with_common_attributes() -> None:
    assert file_specs(["/etc/a", "/etc/b"], mode="0750", group=101) == [
        {"path": "/etc/a", "mode": "0750", "group": "101"},
        {"path": "/etc/b", "mode": "0750", "group": "101"},
    ]


def test_files_with_contents_under_a_directory() -> None:
    assert file_specs(
        ["node", "gateway"], "/t", contents=["n\n", "g\n"], suffix=".yml", mode="0644"
    ) == [
        {"path": "/t/node.yml", "mode": "0644", "content": "n\n"},
        {"path": "/t/gateway.yml", "mode": "0644", "content": "g\n"},
    ]


def test_copies_from_a_staging_directory() -> None:
    assert file_specs(
        ["tls/key.pem"], "/live", src_dir="/staging", mode="preserve", owner=None
    ) == [{"path": "/live/tls/key.pem", "mode": "preserve", "src": "/staging/tls/key.pem"}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contents": ["x"], "src_dir": "/s"}, "not both"),
        ({"contents": ["x", "y"]}, "1 names but 2 contents"),
        ({"perms": "0644"}, "unknown attribute(s) perms"),
    ],
)
def test_mistakes_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        file_specs(["a"], "/d", **kwargs)  # type: ignore[arg-type]


def test_secret_marks_every_entry_and_must_be_a_boolean() -> None:
    assert file_specs(["tls/key.pem"], "/live", src_dir="/staging", mode="0640", secret=True) == [
        {"path": "/live/tls/key.pem", "mode": "0640", "secret": True, "src": "/staging/tls/key.pem"}
    ]
    with pytest.raises(AnsibleFilterError, match="secret must be true or false"):
        file_specs(["k"], "/live", mode="0640", secret="yes")
