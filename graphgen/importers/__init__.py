"""Trained ResNets from other tools into graphgen graphs: Gluon `.params`, ONNX, state_dicts."""
