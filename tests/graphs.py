"""A small builder for test graphs: NCHW models with random weights, via onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Appends nodes and tracks each tensor's channel count (axis 1)."""

    def __init__(
        self, channels: int = 3, size: int = 8, seed: int = 0, opset: int = 17, batch: str = "N"
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.channels: dict[str, int] = {"x": channels}
        self.size = size
        self.inputs = [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])
        ]
        self._nodes = 0

    def _name(self, prefix: str) -> str:
        self._nodes += 1
        return f"{prefix}{self._nodes}"

    def init(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or f"w{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        channels: int | None = None,
        outputs: int = 1,
        **attrs: object,
    ) -> str | list[str]:
        names = [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        for name in names:
            self.channels[name] = (
                channels if channels is not None else self.channels.get(inputs[0], 0)
            )
        return names[0] if outputs == 1 else names

    def weight(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    def conv(
        self,
        x: str,
        out: int,
        kernel: int = 3,
        group: int = 1,
        stride: int = 1,
        bias: bool = True,
        weight: str | None = None,
    ) -> str:
        cin = self.channels[x]
        w = weight or self.init(self.weight(out, cin // group, kernel, kernel))
        inputs = [x, w] + (
            [self.init(self.rng.standard_normal(out).astype(np.float32))] if bias else []
        )
        pad = kernel // 2
        return self.op(
            "Conv",
            inputs,
            channels=out,
            group=group,
            strides=[stride, stride],
            pads=[pad] * 4,
            kernel_shape=[kernel, kernel],
        )

    def bn(self, x: str) -> str:
        c = self.channels[x]
        params = [
            self.init(self.rng.uniform(0.5, 1.5, c).astype(np.float32)),
            self.init(self.rng.standard_normal(c).astype(np.float32)),
            self.init(self.rng.standard_normal(c).astype(np.float32) * 0.1),
            self.init(self.rng.uniform(0.5, 1.5, c).astype(np.float32)),
        ]
        return self.op("BatchNormalization", [x, *params])

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def gemm(self, x: str, out: int) -> str:
        cin = self.channels[x]
        return self.op(
            "Gemm",
            [x, self.init(self.weight(out, cin)), self.init(np.zeros(out, np.float32))],
            channels=out,
            transB=1,
        )

    def flatten(self, x: str, spatial: int) -> str:
        return self.op("Flatten", [x], channels=self.channels[x] * spatial, axis=1)

    def split(self, x: str, sizes: list[int]) -> list[str]:
        """Split along channels; sizes are an input from opset 13, an attribute before."""
        if self.opset >= 13:
            inputs, attrs = [x, self.init(np.array(sizes))], {}
        else:
            inputs, attrs = [x], {"split": sizes}
        outputs = self.op("Split", inputs, channels=sizes[0], outputs=len(sizes), axis=1, **attrs)
        for name, size in zip(outputs, sizes):
            self.channels[name] = size
        return outputs

    def resize2x(self, x: str) -> str:
        scales = self.init(np.array([1, 1, 2, 2], np.float32))
        roi = self.init(np.array([], np.float32)) if self.opset < 13 else ""
        return self.op("Resize", [x, roi, scales], mode="nearest")

    def concat(self, inputs: list[str]) -> str:
        return self.op("Concat", inputs, channels=sum(self.channels[i] for i in inputs), axis=1)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "test",
            self.inputs,
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model, full_check=True)
        return model


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})
