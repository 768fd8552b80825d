#!/usr/bin/env python3
"""Golden fixture for `tuneguard_model::quant::dequantize`, produced by the reference
implementation in gguf-py (`gguf.quants`, a NumPy port of ggml's `dequantize_row_*`).

Re-run (from the repo root) after changing the inputs below:

    ~/.cache/tuneguard-pytorch-baseline/venv/bin/python scripts/make_quant_fixture.py
    # or, without that venv:
    python3 -m venv /tmp/qv && /tmp/qv/bin/pip install gguf==0.19.0 numpy
    /tmp/qv/bin/python scripts/make_quant_fixture.py

Writes crates/model/tests/fixtures/quant_fixture.json:

    {"generator": ..., "rows": 4, "cols": 512,
     "types": {"Q4_0": {"source": "quantize" | "random", "raw": "<hex>", "f32": "<hex>"}, ...}}

`raw` is the tensor's ggml bytes; `f32` is gguf-py's dequantization as little-endian f32
bytes (hex, so the comparison is bit-for-bit, signed zeros included).
For the types gguf-py can quantize the raw bytes come from `gguf.quants.quantize` applied to a
seeded normal matrix with a few large values mixed in; for the K-quants (gguf-py can only
dequantize them) the raw bytes are seeded random bytes with the f16 scale fields overwritten
by small finite values.
"""

import json
import pathlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROWS, COLS = 4, 512  # 2 super-blocks per row for the K-quants
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/model/tests/fixtures/quant_fixture.json"

QUANTIZED = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
# type -> byte offsets of the f16 scale fields inside one block (ggml-common.h block_q*_K)
K_QUANTS = {
    T.Q2_K: [80, 82],  # scales[16] qs[64] d dmin
    T.Q3_K: [108],  # hmask[32] qs[64] scales[12] d
    T.Q4_K: [0, 2],  # d dmin scales[12] qs[128]
    T.Q5_K: [0, 2],  # d dmin scales[12] qh[32] qs[128]
    T.Q6_K: [208],  # ql[128] qh[64] scales[16] d
}


def matrix(rng: np.random.Generator) -> np.ndarray:
    m = rng.standard_normal((ROWS, COLS)).astype(np.float32) * np.float32(0.5)
    # a few outliers, and one all-zero block (exercises d == 0)
    m[0, 7] = 12.5
    m[1, 100] = -30.25
    m[2, 300] = 7.0e3
    m[3, 0:32] = 0.0
    return m


def random_k_blocks(rng: np.random.Generator, ty: T) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[ty]
    n_blocks = ROWS * COLS // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in K_QUANTS[ty]:
        scale = rng.uniform(-0.02, 0.05, size=n_blocks).astype(np.float16)
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    # one subnormal scale to check exact f16 -> f32 conversion
    off = K_QUANTS[ty][0]
    raw[0, off : off + 2] = np.array([3.0e-6], dtype=np.float16).view(np.uint8)
    return raw.reshape(ROWS, -1)


def main() -> None:
    rng = np.random.default_rng(20240611)
    m = matrix(rng)
    types = {}
    for ty in QUANTIZED:
        raw = np.ascontiguousarray(gguf.quants.quantize(m, ty)).view(np.uint8).reshape(ROWS, -1)
        types[ty.name] = ("quantize", raw)
    for ty in K_QUANTS:
        types[ty.name] = ("random", random_k_blocks(rng, ty))

    out = {"generator": f"scripts/make_quant_fixture.py, gguf-py {gguf_version()}", "rows": ROWS, "cols": COLS, "types": {}}
    for name, (source, raw) in types.items():
        ty = T[name]
        deq = np.asarray(gguf.quants.dequantize(raw, ty), dtype=np.float32).reshape(ROWS, COLS)
        out["types"][name] = {
            "source": source,
            "raw": raw.tobytes().hex(),
            "f32": deq.astype("<f4").tobytes().hex(),
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(types)} types)")


def gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # noqa: BLE001 - version is informational only
        return "unknown"


if __name__ == "__main__":
    main()
