"""Where the Q/DQ pairs go, decided per op of the plan.

- `trt`: TensorRT's rules for explicit quantization ("Working with Quantized Types", and the
  ModelOpt ONNX quantizer's residual-Add handling): quantize the inputs of every Conv and Gemm,
  and the residual (shortcut) input of each Add, never its conv-branch input, so that TensorRT
  fuses conv + bias + add + ReLU into one int8 kernel with the next Q in its epilogue.
- `ort` (the default): the same, plus a Q/DQ pair on every conv's output, which onnxruntime
  needs to fuse DQ -> Conv -> Q into a QLinearConv (with inputs only it runs fp32 convs on
  dequantized weights), and on the output of an Add no ReLU follows. Where a ReLU follows a
  conv, its output pair takes the ReLU output's scale in uint8 with zero point 0, so the Q
  itself clamps at 0: the pair adds no error and onnxruntime drops the ReLU. An Add followed by
  a ReLU is left to the ReLU's Q, which onnxruntime folds into a QLinearAdd.

The zoo variants: a grouped or depthwise conv (ResNeXt) is a Conv like any other, its int8
weight scaled per output channel (axis 0 of its (cout, cin / groups, k, k) weight, which is what
DequantizeLinear's axis 0 means for it). Attention (SE, ECA) keeps its gate in float: SE's two
1x1 convs are Convs and quantized as such (in the ort placement the second's output passes a
Q/DQ pair like every conv output), but the sigmoid, the multiply that scales the branch and
ECA's 1-d conv across the channels compute in float, and nothing quantizes their outputs. The gate is a few
multiplies per channel; its sigmoid output in [0, 1] quantized to 8 bits would scale every
channel of the branch by a step of 1/255 and buys no speed on either engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from graphgen.plan import Add, ChannelConv, Conv, Linear, MaxPool, Plan, Relu, Scale, Sigmoid
from graphgen.plan import inputs as reads


@dataclass(frozen=True)
class Placement:
    """Which tensors carry a Q/DQ pair: `inputs` (tensor -> the ops whose input reads it through
    DQ), `outputs` (conv outputs quantized where they are made, ort only) and the scale each
    output pair borrows (the following ReLU's)."""

    inputs: dict[str, list[tuple[str, int]]]  # tensor -> [(op name, input index)]
    outputs: list[str]
    scale_of: dict[str, str]  # quantized tensor -> tensor whose range sets its scale
    unsigned: set[str] = dataclasses.field(default_factory=set)  # uint8, zero point 0 (ort)

    def observed(self) -> set[str]:
        return {*self.inputs, *self.outputs, *self.scale_of.values()}


def placement_for(plan: Plan, placement: str) -> Placement:
    inputs: dict[str, list[tuple[str, int]]] = {}
    outputs: list[str] = []
    scale_of: dict[str, str] = {}
    relu_of = {op.x: op.out for op in plan.ops if isinstance(op, Relu)}
    readers: dict[str, int] = {}
    for op in plan.ops:
        for name in reads(op):
            readers[name] = readers.get(name, 0) + 1
    # Non-negative tensors: ReLU outputs and max-pools of them. In the ort placement they are
    # uint8 with zero point 0 (scale amax / 255: one more bit than int8), and so is a conv
    # output whose one reader is a ReLU: its Q then clamps at 0, the ReLU after its DQ is a
    # no-op, and onnxruntime drops the ReLU and the DQ -> Q between two QLinearConvs.
    positive = {op.out for op in plan.ops if isinstance(op, Relu)}
    positive |= {op.out for op in plan.ops if isinstance(op, MaxPool) and op.x in positive}
    unsigned: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Conv | Linear):
            inputs.setdefault(op.x, []).append((op.name, 0))
        elif isinstance(op, Add):
            inputs.setdefault(op.b, []).append((op.name, 1))
        # An Add followed by a ReLU is left to the ReLU's (uint8, zero point 0) Q: onnxruntime
        # folds ReLU -> Q into the Q and then fuses DQ, DQ -> Add -> Q into a QLinearAdd; a Q of
        # its own on the Add's output left a DQ -> Q pair behind every block.
        add_relu = isinstance(op, Add) and op.out in relu_of
        if isinstance(op, Conv | Add) and placement == "ort" and not add_relu:
            outputs.append(op.out)
            scale_of[op.out] = relu_of.get(op.out, op.out)
            if op.out in relu_of and readers.get(op.out) == 1:
                unsigned.add(op.out)
    for name in inputs:
        scale_of.setdefault(name, name)
        if placement == "ort" and name in positive:
            unsigned.add(name)
    return Placement(inputs, outputs, scale_of, unsigned)


def kept_float(plan: Plan) -> str | None:
    """What of the graph stays float beyond the placement's rules (said by `graphgen quantize`
    and recorded in the file), or None: attention's gates."""
    kinds = {type(op) for op in plan.ops}
    if not kinds & {Sigmoid, Scale, ChannelConv}:
        return None
    what = "sigmoid and multiply" + (", ECA's 1-d conv" if ChannelConv in kinds else "")
    return f"attention gates ({plan.spec.attention}) kept float: {what}"
