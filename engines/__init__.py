"""Runtimes behind one interface (scott.backend.DiffusionBackend): PyTorch, ONNX Runtime, OpenVINO, TensorRT.

engines.loader.load_pipeline reads a model folder onto one of them, as engines.load_options.LoadOptions says.
"""
