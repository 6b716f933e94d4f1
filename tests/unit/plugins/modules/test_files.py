"""edgeai.appliance.files: directories, files and removals in one run; check and diff mode."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.edgeai.appliance.plugins.modules import files
from ollama_helpers import RunModule


def _mode(path: Path) -> str:
    return f"0{stat.S_IMODE(path.stat().st_mode):o}"


def _args(tmp_path: Path) -> dict[str, Any]:
    return {
        "directories": [{"path": str(tmp_path / "etc" / "app" / "conf.d"), "mode": "0750"}],
        "files": [
            {
                "path": str(tmp_path / "etc" / "app" / "app.yml"),
                "content": "a: 1\n",
                "mode": "0640",
            },
            {
                "path": str(tmp_path / "etc" / "app" / "conf.d" / "x.yml"),
                "content": "x\n",
                "mode": "0644",
            },
        ],
    }


def test_creates_everything_then_changes_nothing(tmp_path: Path, run_module: RunModule) -> None:
    first = run_module(files.main, _args(tmp_path))
    assert first["changed"] is True
    app = tmp_path / "etc" / "app"
    assert first["changed_paths"] == [
        str(tmp_path / "etc"),
        str(app),
        str(app / "conf.d"),
        str(app / "app.yml"),
        str(app / "conf.d" / "x.yml"),
    ]
    assert (app / "app.yml").read_text() == "a: 1\n"
    assert _mode(app / "app.yml") == "0640"
    assert _mode(app / "conf.d") == "0750"
    assert _mode(tmp_path / "etc") == "0750"

    second = run_module(files.main, _args(tmp_path))
    assert second["changed"] is False
    assert second["changed_paths"] == []


def test_changes_only_what_differs_and_diffs_it(tmp_path: Path, run_module: RunModule) -> None:
    run_module(files.main, _args(tmp_path))
    args = _args(tmp_path)
    args["files"][0]["content"] = "a: 2\n"
    args["files"][1]["mode"] = "0600"
    result = run_module(files.main, args, diff=True)
    app = tmp_path / "etc" / "app"
    assert result["changed_paths"] == [str(app / "app.yml"), str(app / "conf.d" / "x.yml")]
    content = [d for d in result["diff"] if "before_header" in d]
    assert content == [
        {
            "before_header": str(app / "app.yml"),
            "after_header": str(app / "app.yml"),
            "before": "a: 1\n",
            "after": "a: 2\n",
        }
    ]
    modes = [d for d in result["diff"] if "before_header" not in d]
    assert modes[0]["before"]["mode"] == "0644"
    assert modes[0]["after"]["mode"] == "0600"
    assert (app / "app.yml").read_text() == "a: 2\n"
    assert _mode(app / "conf.d" / "x.yml") == "0600"


def test_check_mode_reports_and_touches_nothing(tmp_path: Path, run_module: RunModule) -> None:
    result = run_module(files.main, _args(tmp_path), check=True)
    assert result["changed"] is True
    assert str(tmp_path / "etc" / "app" / "app.yml") in result["changed_paths"]
    assert not (tmp_path / "etc").exists()

    run_module(files.main, _args(tmp_path))
    args = _args(tmp_path)
    args["files"][0]["content"] = "changed\n"
    args["absent"] = [str(tmp_path / "etc" / "app" / "conf.d")]
    checked = run_module(files.main, args, check=True)
    assert checked["changed_paths"] == [
        str(tmp_path / "etc" / "app" / "app.yml"),
        str(tmp_path / "etc" / "app" / "conf.d"),
    ]
    assert (tmp_path / "etc" / "app" / "app.yml").read_text() == "a: 1\n"
    assert (tmp_path / "etc" / "app" / "conf.d" / "x.yml").exists()


def test_copies_from_a_file_on_the_host_and_preserves_its_mode(
    tmp_path: Path, run_module: RunModule
) -> None:
    staging = tmp_path / "staging.conf"
    staging.write_text("server {}\n")
    staging.chmod(0o640)
    live = tmp_path / "live.conf"
    args = {"files": [{"path": str(live), "src": str(staging), "mode": "preserve"}]}
    pending = run_module(files.main, args, check=True)
    assert pending["changed_paths"] == [str(live)]
    assert not live.exists()
    assert run_module(files.main, args)["changed"] is True
    assert live.read_text() == "server {}\n"
    assert _mode(live) == "0640"
    assert run_module(files.main, args, check=True)["changed"] is False


def test_replaces_atomically_keeping_no_temporary_file(
    tmp_path: Path, run_module: RunModule
) -> None:
    target = tmp_path / "a.json"
    target.write_text("{}")
    inode = target.stat().st_ino
    run_module(
        files.main, {"files": [{"path": str(target), "content": '{"a": 1}', "mode": "0644"}]}
    )
    assert target.read_text() == '{"a": 1}'
    assert target.stat().st_ino != inode, "written in place instead of renamed over"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_removes_files_and_directories(tmp_path: Path, run_module: RunModule) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    args = {"absent": [str(tmp_path / "d"), str(tmp_path / "g"), str(tmp_path / "never")]}
    result = run_module(files.main, args)
    assert result["changed_paths"] == [str(tmp_path / "d"), str(tmp_path / "g")]
    assert list(tmp_path.iterdir()) == []
    assert run_module(files.main, args)["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"files": [{"path": "rel.txt", "content": "x", "mode": "0644"}]}, "must be absolute"),
        ({"absent": ["/"]}, "not /"),
        ({"files": [{"path": "/tmp/x", "content": "x", "mode": "preserve"}]}, "preserve needs src"),
        (
            {"files": [{"path": "/tmp/x", "mode": "0644"}]},
            "one of the following is required: content, src",
        ),
        (
            {"files": [{"path": "/tmp/x", "src": "/nonexistent/edgeai", "mode": "0644"}]},
            "is not a file",
        ),
    ],
)
def test_bad_input_fails_with_a_clear_message(
    args: dict[str, Any], message: str, run_module: RunModule
) -> None:
    result = run_module(files.main, args)
    assert result["failed"] is True
    assert message in result["msg"]


def test_a_missing_directory_fails_without_writing(tmp_path: Path, run_module: RunModule) -> None:
    result = run_module(
        files.main,
        {"files": [{"path": str(tmp_path / "no" / "f"), "content": "x", "mode": "0644"}]},
    )
    assert result["failed"] is True
    assert "does not exist" in result["msg"]


KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIOldKey\n-----END EC PRIVATE KEY-----\n"


def test_a_secret_file_diff_shows_that_it_changed_never_its_content(
    tmp_path: Path, run_module: RunModule
) -> None:
    staging = tmp_path / "staging-key.pem"
    staging.write_text(KEY)
    live = tmp_path / "key.pem"
    secret = {"path": str(live), "src": str(staging), "mode": "0640", "secret": True}
    plain = {"path": str(tmp_path / "nginx.conf"), "content": "worker 1;\n", "mode": "0640"}
    first = run_module(files.main, {"files": [secret, plain]}, diff=True)
    assert live.read_text() == KEY
    staging.write_text(KEY.replace("OldKey", "NewKey"))
    plain["content"] = "worker 2;\n"
    results = [first]
    for check in (True, False):
        result = run_module(files.main, {"files": [secret, plain]}, check=check, diff=True)
        results.append(result)
        assert result["changed_paths"] == [str(live), str(tmp_path / "nginx.conf")]
        key_diff, conf_diff = (d for d in result["diff"] if "before_header" in d)
        hidden = f"({len(KEY)} bytes of secret content, not shown: "
        assert key_diff["before"] == hidden + "the version on the host)\n"
        assert key_diff["after"] == hidden + "the new version)\n"
        assert conf_diff["after"] == "worker 2;\n"  # other files keep their diff
    for result in results:
        assert "PRIVATE KEY" not in str(result)
    assert "NewKey" in live.read_text()


def test_secret_content_never_comes_back_in_the_result(
    tmp_path: Path, run_module: RunModule
) -> None:
    path = tmp_path / "password"
    args = {"files": [{"path": str(path), "content": "hunter2-hunter2", "mode": "0400"}]}
    args["files"][0]["secret"] = True
    result = run_module(files.main, args, diff=True)
    assert path.read_text() == "hunter2-hunter2"
    assert "hunter2" not in str(result)
