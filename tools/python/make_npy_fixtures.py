"""Write the tiny NumPy-made arrays the `bedside-ml` `.npy` reader is tested against.

Run from the repository root: python tools/python/make_npy_fixtures.py (needs numpy only).
Element values follow formulas the Rust test recomputes.
"""
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "bedside-ml" / "tests" / "fixtures"
OUT.mkdir(parents=True, exist_ok=True)
# [frames, height, width, 3] uint8: value = (f*100 + y*10 + x*3 + c) % 256
f, y, x, c = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), np.arange(3), indexing="ij")
np.save(OUT / "rgb_u8.npy", ((f * 100 + y * 10 + x * 3 + c) % 256).astype(np.uint8))
# [frames, height, width] int16: value = f*1000 - y*37 + x
f, y, x = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
np.save(OUT / "gray_i16.npy", (f * 1000 - y * 37 + x).astype(np.int16))
# float64 and Fortran order (the latter must be rejected)
np.save(OUT / "f64.npy", np.linspace(-1.0, 1.0, 6).reshape(2, 3))
np.save(OUT / "fortran_f32.npy", np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
