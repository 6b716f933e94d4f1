"""An LLM stream in flight on a model host that stops (issue 16 item 6), from a client's side:
the stream that host serves ends cut (an error or a truncated stream, never a replay) within
the documented bound, not after the LLM route's 600 s read timeout; the streams the other
hosts serve finish; the next request is served by another host.

The bound: the stopped host gets `docker stop --time 5` (its services may still answer for those
5 s), then the gateway gives up a silent peer after gateway_peer_tcp_keepalive_idle + _interval x
_probes seconds (roles/gateway/defaults). The client's read timeout (CLIENT_READ_TIMEOUT) is the
hang detector: without that TCP keepalive the stream waits for gateway_llm_read_timeout (600 s)
and the client gives up first.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests
import yaml
from cluster_lab import (
    CA,
    GATEWAYS,
    HOSTS,
    URL,
    USER,
    holder,
    on_host,
    run,
    running,
    vrrp_log,
    wait_for,
)

_DEFAULTS = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "roles/gateway/defaults/main.yml").read_text()
)
STOP_GRACE = 5  # docker stop --time
_PARTS = ("idle", "interval", "probes")
_KEEPALIVE = {k: _DEFAULTS[f"gateway_peer_tcp_keepalive_{k}"] for k in _PARTS}
PEER_GIVEN_UP = _KEEPALIVE["idle"] + _KEEPALIVE["interval"] * _KEEPALIVE["probes"]
# the stop itself, keepalive's first probe lands on a timer tick, the cut travels back: slack
LIMIT = STOP_GRACE + PEER_GIVEN_UP + 10
CLIENT_READ_TIMEOUT = 60
# three at once: the VIP holder's least_conn pool (its own Ollama, one bridge per peer) gives each
# member one, so one of them runs on the model-only host
STREAMS = 3
GENERATE = {
    "prompt": "Tell the long story of a lighthouse keeper, chapter by chapter.",
    "stream": True,
    # long enough to be in flight when the host stops; the lab model's one-line stop sequences off
    "options": {"num_predict": 400, "stop": ["<no stop sequence>"]},
}


@dataclass
class LLMStream:
    """One streamed /api/generate through the VIP: the chunks it got and how it ended."""

    model: str
    chunks: int = 0
    done: bool = False
    error: str = ""
    ended: float = 0.0
    last_chunk: float = 0.0
    finished: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with requests.post(
                f"{URL}/api/generate", json={"model": self.model, **GENERATE}, headers=USER,
                verify=CA, stream=True, timeout=(5, CLIENT_READ_TIMEOUT),
            ) as answer:  # fmt: skip
                if answer.status_code != 200:
                    self.error = f"HTTP {answer.status_code}"
                    return
                for line in answer.iter_lines():
                    if line:
                        self.chunks += 1
                        self.last_chunk = time.monotonic()
                        self.done = self.done or _done(line)
        except requests.RequestException as error:
            # requests reports a read timeout in the middle of a body as a ConnectionError
            self.error = "hung" if "timed out" in str(error) else type(error).__name__
        finally:
            self.ended = time.monotonic()
            self.finished.set()


def _done(line: bytes) -> bool:
    try:
        return bool(json.loads(line).get("done"))
    except ValueError:  # a line cut in the middle
        return False


def _writing(host: str) -> int:
    """Requests the host's gateway is answering right now (stub_status; this one included)."""
    status = on_host(
        host, "docker", "exec", "gateway", "curl", "-fsS", "http://127.0.0.1:8080/stub_status"
    )
    return int(status.split("Writing:")[1].split()[0])


def _load(host: str, model: str) -> None:
    """Load the model on the host's Ollama (a generate request without a prompt, Ollama's way)."""
    body = json.dumps({"model": model})
    request = (
        "import urllib.request; urllib.request.urlopen(urllib.request.Request("
        f"'http://127.0.0.1:11434/api/generate', {body!r}.encode(),"
        " {'Content-Type': 'application/json'}), timeout=240).read()"
    )
    on_host(host, "docker", "exec", "ollama", "python", "-c", request)


def test_an_llm_stream_on_a_stopped_model_host_ends_cut_and_the_next_is_served() -> None:
    target = HOSTS[2]  # models only: it serves peers' requests, it holds no VIP
    tags = requests.get(f"{URL}/api/tags", headers=USER, verify=CA, timeout=10)
    assert tags.status_code == 200, tags.text
    model = tags.json()["models"][0]["name"]
    # the model loaded on each host first, one host at a time: the streams measure a host's stop,
    # not three cold loads at once on the lab's shared cores
    for host in HOSTS:
        _load(host, model)
    vip_holder = holder()
    streams = [LLMStream(model) for _ in range(STREAMS)]
    for stream in streams:
        threading.Thread(target=stream.run, daemon=True).start()
    wait_for("every stream sends tokens", lambda: all(s.chunks for s in streams), 180, step=0.5)
    wait_for(f"{target} serves a stream", lambda: _writing(target) > 1, 10, step=0.5)
    stopped_at = time.monotonic()
    try:
        run("docker", "stop", "--time", str(STOP_GRACE), target)
        for stream in streams:
            stream.finished.wait(CLIENT_READ_TIMEOUT + 300)
        ends = [
            f"{'done' if s.done else s.error or 'cut'} after {s.chunks} chunks, "
            f"{s.ended - stopped_at:.1f} s after the stop (last chunk at "
            f"{s.last_chunk - stopped_at:.1f} s)"
            for s in streams
        ]
        print(f"{STREAMS} LLM streams through the VIP, {target} stopped: {ends}")
        # a stopped model host is no gateway: the address stays where it was (were it to move,
        # the streams through it would be cut, which is the VIP test's subject, not this one's)
        # (the message, and so the keepalived logs in it, is only made when the assertion fails)
        assert holder() == vip_holder, (
            f"the VIP moved from {vip_holder}: { {h: vrrp_log(h) for h in GATEWAYS} }; {ends}"
        )
        assert all(s.finished.is_set() for s in streams), ends
        # the client's read timeout: the gateway kept the stream open past the bound
        assert not [s for s in streams if s.error == "hung"], f"a stream hung: {ends}"
        cut = [s for s in streams if not s.done]
        assert cut, f"no stream ended cut: none ran on {target}? {ends}"
        assert all(s.ended - stopped_at <= LIMIT for s in cut), f"not cut within {LIMIT} s: {ends}"
        assert len(cut) < STREAMS, f"the streams of the other hosts did not finish: {ends}"
        # the next request: another host serves it
        answer = requests.post(
            f"{URL}/api/generate",
            json={"model": model, "prompt": "Say hello.", "stream": False,
                  "options": {"num_predict": 8}},
            headers=USER, verify=CA, timeout=CLIENT_READ_TIMEOUT,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["done"] is True
    finally:
        # back without a converge, for the tests after this one
        run("docker", "start", target)
        for name in ("gateway", "ollama"):
            wait_for(f"{target}'s {name} runs again", partial(running, target, name), 300, step=5)
