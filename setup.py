"""Build sparselth and its extension ``sparselth._C``.

C++/OpenMP CPU ops are always built; ``csrc/cuda`` sources are added when the installed torch
has CUDA (and ``CUDA_HOME`` is found). ``kernels/`` (Triton) is installed as ``sparselth.kernels``.
Build against the installed torch, without build isolation:
``pip install --no-build-isolation --no-deps -e .``
"""

import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
    if os.environ.get("SPARSELTH_NO_CUDA", "0") == "1":
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O3", "-std=c++17", "-fopenmp-simd", "-DNDEBUG"]
    if "OpenMP" in torch.__config__.parallel_info():
        # at::parallel_for is an OpenMP region in the headers: without -fopenmp it runs on one thread.
        cxx.append("-fopenmp")
    if os.environ.get("SPARSELTH_NATIVE", "1") == "1":
        cxx.append("-march=native")
    define_macros = []
    if _want_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*_op.cpp"))
        define_macros.append(("SPARSELTH_WITH_CUDA", None))
        nvcc = ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            "sparselth._C", sources, define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        )
    return CppExtension("sparselth._C", sources, define_macros=define_macros,
                        extra_compile_args={"cxx": cxx})


packages = find_packages(include=["sparselth", "sparselth.*"]) + ["sparselth.kernels",
                                                                    "sparselth.bench"]

setup(
    packages=packages,
    package_dir={"sparselth.kernels": "kernels", "sparselth.bench": "bench"},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
