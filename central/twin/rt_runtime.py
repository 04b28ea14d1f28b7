"""Sionna RT on this machine: the Dr.Jit backend, and a site loaded as a ready-to-trace scene.

Importing Sionna is slow and touches global state (the Mitsuba variant, Dr.Jit's LLVM), so it
happens here, once, and only when ray tracing is really wanted. Facts behind the defaults are in
docs/architecture.md: LLVM 19 is the oldest that survives the path solver on CPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from central.twin.scene_export import export_scene
from contracts.cache import cache_dir
from central.twin.site import Site

LLVM_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1",
    "/usr/lib/x86_64-linux-gnu/libLLVM-19.so",
    "/usr/lib/aarch64-linux-gnu/libLLVM.so.19.1",
)

_sionna = None


def sionna_rt():
    """Import and return ``sionna.rt`` with the Dr.Jit backend configured.

    CPU (LLVM) by default; set ``RFTWIN_RT_VARIANT=cuda_ad_mono_polarized`` to use a GPU.
    """
    global _sionna
    if _sionna is not None:
        return _sionna
    if "DRJIT_LIBLLVM_PATH" not in os.environ:
        found = next((p for p in LLVM_CANDIDATES if Path(p).exists()), None)
        if found is None:
            raise RuntimeError(
                "Sionna RT on CPU needs LLVM 19: `apt-get install libllvm19` (or set DRJIT_LIBLLVM_PATH)"
            )
        os.environ["DRJIT_LIBLLVM_PATH"] = found
    os.environ.setdefault("DRJIT_CACHE_DIR", str(cache_dir("drjit")))
    import mitsuba as mi

    if mi.variant() is None:
        mi.set_variant(os.environ.get("RFTWIN_RT_VARIANT", "llvm_ad_mono_polarized"))
    from sionna import rt

    _sionna = rt
    return rt


def sionna_version() -> str:
    from importlib.metadata import version

    return version("sionna-rt")


def load_rt_scene(site: Site):
    """A Sionna RT scene of the site: meshes, materials, carrier, isotropic single-antenna arrays.

    Isotropic vertically polarised antennas match the paper; with them the path gain is
    reciprocal, which is what lets the twin trace one map per sensing unit.
    """
    rt = sionna_rt()
    with tempfile.TemporaryDirectory(prefix="rftwin-scene-") as tmp:
        files = export_scene(site, tmp)
        scene = rt.load_scene(str(files.xml_path), merge_shapes=False)
    scene.frequency = site.frequency_hz
    scene.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    return scene
