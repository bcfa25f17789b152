from onnx_cswap.cli import run

run()
