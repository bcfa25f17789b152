from onnx_cswap.cli import main

main()
