"""Time ``imgclf.evaluate`` and ``imgclf.predict`` on a run's val split, in one process (imports excluded).

    python benchmarks/scale_infer.py RUN DATA     # prints one JSON object

After one untimed warm-up prediction (imports): evaluate, the whole call (load the weights, decode
DATA/val, predict, metrics and files); predict, the whole call on the folder DATA/val (decode,
predict, rows, CSV), table output discarded.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import imgclf


def main() -> None:
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    images = sum(1 for p in (data / "val").rglob("*") if p.is_file())
    trust = {"trust_model_code": True}   # the run's model is this benchmark's own scale_model module
    with contextlib.redirect_stdout(io.StringIO()):
        first = sorted((data / "val").rglob("*.jpg"))[:1]
        imgclf.predict(run, first, **trust)   # warm-up: imports, model load paths (not timed)
        start = time.perf_counter()
        imgclf.evaluate(run, data, **trust)
        evaluate_s = time.perf_counter() - start
        start = time.perf_counter()
        imgclf.predict(run, [data / "val"], csv=run / "scale_predictions.csv", force=True, **trust)
        predict_s = time.perf_counter() - start
    print(json.dumps({"images": images, "evaluate_s": round(evaluate_s, 2), "predict_s": round(predict_s, 2),
                      "evaluate_img_per_s": round(images / evaluate_s, 1),
                      "predict_img_per_s": round(images / predict_s, 1)}))


if __name__ == "__main__":
    main()
