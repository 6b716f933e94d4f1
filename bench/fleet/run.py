"""The cost of a model_sync.yml run against fleet size, on N light emulated hosts.

    source <(PYTHONPATH=tools .venv/bin/python -m edgelab env)
    python bench/fleet/run.py [--sizes 1 4 8] [--repeat 2] [--write-doc]

A light host is one container of the project's ONNX service image, reached with the
community.docker.docker connection as root (docker exec): the module runs on its python3, the
model repository is its /models (a tmpfs), and the replica answers on the host's 127.0.0.1:8001,
as on an edge host. It has only what model delivery needs: no Docker engine, no gateway, so
site.yml itself cannot run on it; its converged rerun is measured by the part of it that scales
per model, the onnx_service role's models tasks (model_sync.yml with the manifest it already
serves: one plan task per host).

For each N and each variant (play settings as extra vars or environment), in one run:
- rerun: model_sync.yml with the version every host serves (changed=0);
- new version: model_sync.yml shipping one new ONNX version to every host (and its health gate).
Each measurement is the median of --repeat runs. Marginal cost per extra host:
(T(N) - T(1)) / (N - 1) / T(1).

Every run also records CPU time on both sides, which the machine's other load hardly changes:
the controller's (ansible-playbook and everything it waited for: its forks, the docker CLI
processes of the connection) from getrusage(RUSAGE_CHILDREN), and the hosts' (the containers'
cgroups: the module's Python, the model files). On this machine both sides share the same 2
cores, so the wall time adds them up; on a fleet each device spends its share on its own CPU at
the same time, and what grows with N on the controller is its own CPU per extra host.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from benchkit import machine, write_section  # noqa: E402 - bench/ is not a package
from model_sync.models import mlp, sha256  # noqa: E402

SECTION = "## Fleet: model_sync.yml against fleet size"
IMAGE = os.environ.get("MSYNC_ONNX_IMAGE", "")
PLAYBOOK = ROOT / "playbooks" / "model_sync.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

# name -> (extra vars, environment, revision): what each variant changes against the shipped
# settings; the revision is "" for the working tree, or a commit whose whole collection (playbook,
# roles, plugins) the variant runs ("before" a change)
BEFORE = "ef7885b"  # before the cut: the ONNX health gate ran on converged hosts too
GATE_BEFORE = "aa30f03"  # before the second cut: the gate ran after every install too
TASKS_BEFORE = "fd344b0"  # before one task per host: plan, staging directories, copy, install
IMPORTED = "b5dde1e"  # model_sync.yml importing the roles' models tasks (tried, reverted)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    f"before ({BEFORE}), serial 25%": ({}, {}, BEFORE),
    "shipped (serial 25%, forks 10, pipelining)": ({}, {}, ""),
    "one batch (model_sync_serial=100%)": ({"model_sync_serial": "100%"}, {}, ""),
    f"one batch, ONNX gate after an install too ({GATE_BEFORE})": (
        {"model_sync_serial": "100%"},
        {},
        GATE_BEFORE,
    ),
    f"one batch, four tasks per host ({TASKS_BEFORE})": (
        {"model_sync_serial": "100%"},
        {},
        TASKS_BEFORE,
    ),
    f"one batch, roles imported ({IMPORTED})": (
        {"model_sync_serial": "100%"},
        {},
        IMPORTED,
    ),
    f"shipped before one task per host ({TASKS_BEFORE})": ({}, {}, TASKS_BEFORE),
    "one batch, no pipelining": (
        {"model_sync_serial": "100%"},
        {"ANSIBLE_PIPELINING": "False"},
        "",
    ),
    "one batch, forks 4": ({"model_sync_serial": "100%"}, {"ANSIBLE_FORKS": "4"}, ""),
}


def collection(root: Path, rev: str) -> tuple[Path, dict[str, str]]:
    """model_sync.yml and the environment that runs it: the working tree's, or the whole
    collection as of ``rev`` (unpacked under ``root``, found through ANSIBLE_COLLECTIONS_PATH)."""
    if not rev:
        return PLAYBOOK, {}
    tree = root / f"collection-{rev}"
    target = tree / "ansible_collections" / "edgeai" / "appliance"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "playbooks" / "model_sync.yml", {"ANSIBLE_COLLECTIONS_PATH": str(tree)}


def cgroup_cpu_seconds(pid: int) -> float:
    """CPU time of the cgroup that process ``pid`` is in (cgroup v1 cpuacct or v2 cpu.stat)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            usage = Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")
            return int(usage.read_text()) / 1e9
        if controllers == "":
            stat = Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text()
            return int(re.search(r"usage_usec (\d+)", stat).group(1)) / 1e6
    raise RuntimeError(f"no CPU accounting for pid {pid}")


def controller_cpu_seconds() -> float:
    """User + system CPU of every child process this one has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


class Fleet:
    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.suffix = secrets.token_hex(3)
        self.names = [f"edgeai-fleet-bench-{self.suffix}-{i + 1}" for i in range(size)]

    def __enter__(self) -> Fleet:
        for name in self.names:
            docker(
                "run", "-d", "--name", name, "--tmpfs", "/models:mode=0755",
                "--tmpfs", "/tmp:mode=1777", "--network", "none", "--memory", "512m",
                IMAGE,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        for name in self.names:
            while True:
                state = docker("inspect", "-f", "{{.State.Health.Status}}", name).strip()
                if state == "healthy":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} is {state}")
                time.sleep(1)
        self.pids = [int(docker("inspect", "-f", "{{.State.Pid}}", name)) for name in self.names]
        hosts = {
            name: {
                "ansible_connection": "community.docker.docker",
                "ansible_host": name,
                "ansible_user": "root",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_become": False,
                "onnx_service_replicas": 1,
                "onnx_service_host_port": 8001,
                "onnx_service_models_dir": "/models",
                "onnx_service_models_cache_dir": str(self.root / "cache"),
            }
            for name in self.names
        }
        inventory = {"all": {"children": {"edge": {"hosts": hosts}}}}
        (self.root / "inventory.json").write_text(json.dumps(inventory))
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["docker", "rm", "-f", *self.names], capture_output=True, check=False)

    def sync(
        self,
        models: list[dict],
        variables: dict[str, Any],
        env: dict[str, str],
        book: Path = PLAYBOOK,
    ) -> tuple[float, dict[str, int], dict[str, float]]:
        extra = self.root / f"extra-{secrets.token_hex(4)}.json"
        extra.write_text(json.dumps({"onnx_service_models": models, **variables}))
        hosts_before = sum(cgroup_cpu_seconds(pid) for pid in self.pids)
        controller_before = controller_cpu_seconds()
        start = time.monotonic()
        result = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(self.root / "inventory.json"), "-e", f"@{extra}",
             "--tags", "onnx", str(book)],
            capture_output=True, text=True, check=False, timeout=1800, cwd=ROOT,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                 "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), **env},
        )  # fmt: skip
        took = time.monotonic() - start
        cpu = {
            "controller": controller_cpu_seconds() - controller_before,
            "hosts": sum(cgroup_cpu_seconds(pid) for pid in self.pids) - hosts_before,
        }
        if result.returncode != 0:
            sys.exit(f"model_sync.yml failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
        totals = {"changed": 0, "hosts": 0}
        for line in re.findall(r"^\S+\s+:\s+ok=.*$", result.stdout, re.M):
            totals["changed"] += int(re.search(r"changed=(\d+)", line).group(1))
            totals["hosts"] += 1
        return took, totals, cpu


def entry(path: Path, version: int) -> dict[str, Any]:
    return {"name": "tiny", "version": version, "sha256": sha256(path), "src": str(path)}


def measure(sizes: list[int], repeat: int, variants: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="edgeai-fleet-bench-"))
    try:
        files = root / "files"
        files.mkdir()
        for size in sizes:
            with Fleet(root, size) as fleet:
                version = 1
                current = entry(mlp(files / "tiny-1.onnx", seed=1), 1)
                fleet.sync([current], {"model_sync_serial": "100%"}, {})  # first delivery
                for name in variants:
                    variables, settings, rev = VARIANTS[name]
                    book, env = collection(root, rev)
                    env = {**env, **settings}
                    runs: dict[str, list[tuple[float, dict[str, float]]]] = {
                        "rerun": [],
                        "new_version": [],
                    }
                    for _ in range(repeat):
                        took, totals, cpu = fleet.sync([current], variables, env, book)
                        assert totals["changed"] == 0, totals
                        assert totals["hosts"] == size, totals
                        runs["rerun"].append((took, cpu))
                        version += 1
                        path = mlp(files / f"tiny-{version}.onnx", seed=version)
                        current = entry(path, version)
                        took, totals, cpu = fleet.sync([current], variables, env, book)
                        assert totals["changed"] >= size, totals
                        runs["new_version"].append((took, cpu))
                    figures: dict[str, float] = {}
                    for op, samples in runs.items():
                        figures[op] = statistics.median(took for took, _ in samples)
                        for side in ("controller", "hosts"):
                            figures[f"{op}_{side}_cpu"] = statistics.median(
                                cpu[side] for _, cpu in samples
                            )
                    results.setdefault(name, {})[str(size)] = figures
                    print(f"N={size} {name}: rerun {figures['rerun']:.1f} s "
                          f"(controller CPU {figures['rerun_controller_cpu']:.2f} s), "
                          f"new version {figures['new_version']:.1f} s "
                          f"(controller CPU {figures['new_version_controller_cpu']:.2f} s)",
                          flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any], sizes: list[int], command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Produced by `{command}` on {machine()}. Light hosts (bench/fleet/run.py): one container "
        "of the ONNX service image each, reached by `docker exec` (community.docker.docker); "
        "each figure is the median of the runs, wall time of `ansible-playbook`.",
        "",
        "| variant | operation | "
        + " | ".join(f"N={n}" for n in sizes)
        + " | marginal cost per extra host |",
        "|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for name, per_size in results.items():
        for op, label in (("rerun", "converged rerun"), ("new_version", "one new version")):
            times = [per_size[str(n)][op] for n in sizes]
            base, last = times[0], times[-1]
            marginal = (last - base) / (sizes[-1] - sizes[0]) / base if len(sizes) > 1 else 0
            lines.append(
                f"| {name} | {label} | " + " | ".join(f"{t:.1f} s" for t in times)
                + f" | {marginal * 100:.0f} % of N={sizes[0]} |"
            )  # fmt: skip
    lines += [
        "",
        "CPU time of the same runs (medians): the controller's (ansible-playbook and every process "
        "it waited for: forks, the docker CLI of the connection) and the hosts' (the containers' "
        "cgroups, all hosts together). On a fleet each device spends its share on its own CPU at "
        "the same time; what every extra device adds on the controller is its CPU per extra host, "
        f"shown against one host's whole run (wall time, N={sizes[0]}).",
        "",
        "| variant | operation | controller CPU "
        + " | ".join(f"N={n}" for n in sizes)
        + " | controller CPU per extra host | of one host's run | hosts' CPU per host |",
        "|---|---|" + "---|" * len(sizes) + "---|---|---|",
    ]
    for name, per_size in results.items():
        for op, label in (("rerun", "converged rerun"), ("new_version", "one new version")):
            cpu = [per_size[str(n)][f"{op}_controller_cpu"] for n in sizes]
            extra = (cpu[-1] - cpu[0]) / (sizes[-1] - sizes[0]) if len(sizes) > 1 else 0.0
            wall = per_size[str(sizes[0])][op]
            hosts = per_size[str(sizes[-1])][f"{op}_hosts_cpu"] / sizes[-1]
            lines.append(
                f"| {name} | {label} | " + " | ".join(f"{c:.2f} s" for c in cpu)
                + f" | {extra:.2f} s | {extra / wall * 100:.0f} % | {hosts:.2f} s |"
            )  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    if not IMAGE:
        sys.exit("MSYNC_ONNX_IMAGE is not set: source <(PYTHONPATH=tools python -m edgelab env)")
    results = measure(args.sizes, args.repeat, args.variants)
    (Path(__file__).parent / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    body = report(results, args.sizes, shlex.join(["python", "bench/fleet/run.py", *sys.argv[1:]]))
    print(body)
    if args.write_doc:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
