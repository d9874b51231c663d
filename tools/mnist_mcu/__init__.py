"""mnist-mcu: train an MNIST classifier, compile it for a microcontroller, verify it on the device."""

__version__ = "0.1.0"
