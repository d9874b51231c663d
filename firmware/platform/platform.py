"""PlatformIO development platform for the mnist-mcu firmware.

Everything it needs comes from the system (arm-none-eabi-gcc, qemu-system-arm,
pyocd/openocd), so no packages are declared and nothing is downloaded.
"""

from platformio.public import PlatformBase


class MnistmcuPlatform(PlatformBase):
    def is_embedded(self):
        # No "uploader" package is declared, but the targets are microcontrollers.
        return True
