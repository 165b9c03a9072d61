"""graphgen: ResNet specs compiled into ONNX graphs, with no torch and no MXNet."""

__version__ = "0.1.0"
