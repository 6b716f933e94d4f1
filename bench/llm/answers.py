"""The lab model's answers to a fixed set of questions (greedy) and its tokens/s, for two Ollama
stand-in images side by side: e.g. the one before a change and the one after.

Each image runs in its own container (pinned to the same CPUs), Gemma 3 270M is created in it from
the lab's GGUF, with the template and parameters the lab had then (``--before-lab`` /
``--after-lab``: a git revision whose inventories/lab/group_vars/all/ollama.yml is read, or
``worktree``). Every question goes to /api/generate and /api/chat, greedy (temperature 0, seed
42); tokens/s is eval_count over eval_duration of a raw 64-token generation, the median of the
rounds, the two images alternating.

Usage: python bench/llm/answers.py --before IMAGE --after IMAGE [--before-lab REV]
                                   [--after-lab worktree] [--rounds 3] [--cpus 0]
                                   [--out bench/llm/answers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from run import standin_url

REPO = Path(__file__).resolve().parents[2]
LAB = Path(os.environ.get("EDGEAI_LAB_STATE", REPO / ".lab"))
GGUF = LAB / "gemma-3-270m-q4_k_m.gguf"
MODEL = "gemma3:270m"
INVENTORY = "inventories/lab/group_vars/all/ollama.yml"
QUESTIONS = [
    "What is the capital of France? Answer in one word.",
    "What is the capital of Japan? Answer in one word.",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "What colour is grass?",
]
GREEDY = {"temperature": 0, "seed": 42, "num_predict": 32}
SPEED_PROMPT = "The history of the bicycle begins"


class _Inventory(yaml.SafeLoader):
    pass


_Inventory.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def lab_entry(revision: str) -> dict[str, Any]:
    if revision == "worktree":
        text = (REPO / INVENTORY).read_text()
    else:
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:{INVENTORY}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    models = yaml.load(text, _Inventory)["ollama_models"]
    return next(m for m in models if m["name"] == MODEL)


def start(name: str, image: str, cpus: str) -> str:
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--cpuset-cpus", cpus, "--read-only",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
         "--tmpfs", "/home/ollama/.ollama:size=700m,uid=10434,gid=10434",
         "-e", "OLLAMA_KEEP_ALIVE=-1", "-p", "127.0.0.1::11434", image],
        check=True, capture_output=True,
    )  # fmt: skip
    return standin_url(name)


def create(url: str, entry: dict[str, Any], threads: int) -> None:
    digest = (
        "sha256:"
        + subprocess.run(
            ["sha256sum", str(GGUF)], check=True, capture_output=True, text=True
        ).stdout.split()[0]
    )
    with httpx.Client(base_url=url, timeout=600) as client:
        with GGUF.open("rb") as data:
            client.post(f"/api/blobs/{digest}", content=data).raise_for_status()
        body: dict[str, Any] = {
            "model": MODEL,
            "files": {GGUF.name: digest},
            "parameters": {**entry.get("parameters", {}), "num_thread": threads},
            "stream": False,
        }
        if entry.get("template"):
            body["template"] = entry["template"]
        client.post("/api/create", json=body).raise_for_status()
        client.post("/api/generate", json={"model": MODEL, "prompt": ""}).raise_for_status()


def answers(url: str) -> list[dict[str, str]]:
    rows = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for question in QUESTIONS:
            generated = client.post(
                "/api/generate",
                json={"model": MODEL, "prompt": question, "stream": False, "options": GREEDY},
            ).json()["response"]
            chatted = client.post(
                "/api/chat",
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": question}],
                    "stream": False,
                    "options": GREEDY,
                },
            ).json()["message"]["content"]
            rows.append({"question": question, "generate": generated, "chat": chatted})
    return rows


def speed(url: str) -> float:
    body = {
        "model": MODEL,
        "prompt": SPEED_PROMPT,
        "raw": True,
        "stream": False,
        "options": {"temperature": 0, "seed": 42, "num_predict": 64},
    }
    final = httpx.post(f"{url}/api/generate", json=body, timeout=600).json()
    return float(final["eval_count"]) / (final["eval_duration"] / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--before-lab", default="main")
    parser.add_argument("--after-lab", default="worktree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", default="0")
    parser.add_argument("--out", type=Path, default=REPO / "bench/llm/answers.json")
    args = parser.parse_args()
    threads = len(args.cpus.split(","))
    sides = {
        "before": (args.before, lab_entry(args.before_lab)),
        "after": (args.after, lab_entry(args.after_lab)),
    }
    names = {side: f"edgeai-answers-{side}-{os.getpid()}" for side in sides}
    result: dict[str, Any] = {"questions": QUESTIONS, "options": GREEDY, "cpus": args.cpus}
    try:
        urls = {}
        for side, (image, entry) in sides.items():
            urls[side] = start(names[side], image, args.cpus)
            create(urls[side], entry, threads)
            result[side] = {"image": image, "template": entry.get("template", ""),
                            "parameters": entry.get("parameters", {})}  # fmt: skip
        for side in sides:
            result[side]["answers"] = answers(urls[side])
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side in sides:
                rates[side].append(round(speed(urls[side]), 2))
        for side in sides:
            result[side]["tokens_per_s"] = rates[side]
            result[side]["tokens_per_s_median"] = statistics.median(rates[side])
        result["ratio_after_before"] = round(
            result["after"]["tokens_per_s_median"] / result["before"]["tokens_per_s_median"], 3
        )
    finally:
        for name in names.values():
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
