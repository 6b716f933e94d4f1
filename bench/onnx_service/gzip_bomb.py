"""Peak memory of one gzip'd JSON request of zeros (issue #14 item 4), in-process.

    python bench/onnx_service/gzip_bomb.py

A 28 KiB gzip body that inflates to ~30 MiB of `[0,0,...]` for an FP32 [N, 4] model, sent once
to the service with its default settings; prints the status, the answer's size and the growth
of the process's peak RSS. Before max_request_elements the service parsed it (+405 MiB, a
56.5 MiB answer); now it answers 413 before parsing (+38 MiB: the inflated bytes).
"""

import gzip
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "onnx_service" / "tests"))
from fastapi.testclient import TestClient
from onnx_models import scale
from onnx_service.app import create_app
from onnx_service.settings import Settings

ROWS = 3_700_000  # of 4 zeros: 14.8 M values, ~30 MiB of JSON


def main() -> None:
    root = Path(tempfile.mkdtemp()) / "models"
    scale(root / "flat" / "1" / "model.onnx", 1.0)
    head = b'{"inputs":[{"name":"x","shape":[%d,4],"datatype":"FP32","data":[' % ROWS
    packed = gzip.compress(head + b"0," * (4 * ROWS - 1) + b"0]}]}", 9)
    app = create_app(Settings(model_repository=root, grpc_port=0))
    with TestClient(app) as client:
        while client.get("/v2/health/ready").status_code != 200:
            pass
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        answer = client.post(
            "/v2/models/flat/infer", content=packed, headers={"Content-Encoding": "gzip"}
        )
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"gzip body {len(packed) / 1024:.0f} KiB -> {answer.status_code}, answer "
        f"{len(answer.content) / 2**20:.1f} MiB, peak RSS +{(after - before) / 1024:.0f} MiB"
    )
    if answer.status_code != 200:
        print(answer.json()["error"])


if __name__ == "__main__":
    main()
