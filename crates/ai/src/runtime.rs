//! Loading the ONNX Runtime shared library (once per process).
