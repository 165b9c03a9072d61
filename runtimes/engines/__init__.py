"""One runner a file, one file an engine; `runtimes.registry` names them and imports them lazily.

Shared pieces: `ort` (the onnxruntime session base), `ort_cuda` (its GPU base), `trt_profiles`
(optimization profiles and engine caches of the TensorRT-based runners), `trt_build` (building
TensorRT engines) and `cuda_util` (the CUDA runtime through cuda-python).
"""
