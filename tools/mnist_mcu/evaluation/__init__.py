"""The parts of `mnist-mcu evaluate` (the command itself is mnist_mcu.evaluate):

- reference: what the host says about the same images (onnxruntime float model, the host
  build of the generated int8 C, onnxruntime's own int8 graph);
- session:   streaming images to devices (QEMU instances or serial URLs, sharded);
- metrics:   device vs reference figures, ticks converted to their honest unit;
- report:    the JSON report, its plots and the summary lines.
"""
