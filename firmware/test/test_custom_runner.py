"""PlatformIO custom test runner for the kernel tests (`test_framework = custom`).

The test firmware prints "PASS <name> <hash>" / "FAIL <name> <what>" per test and
"DONE <passed> <failed>" at the end (firmware/test/test_kernels/kernel_tests.h), then
leaves QEMU through semihosting (exit status 1 if any test failed).  Each line becomes
a PlatformIO test case; a run that stops before DONE (a fault, a hang cut short by the
testing command's timeout) is an error, so a broken kernel always fails `pio test`.
"""

import re

from platformio.test.result import TestCase, TestStatus
from platformio.test.runners.base import TestRunnerBase

CASE_RE = re.compile(r"^(PASS|FAIL) (\S+)(?: (.*))?$")
DONE_RE = re.compile(r"^DONE (\d+) (\d+)$")


class CustomTestRunner(TestRunnerBase):
    def setup(self):
        self._done = False

    def on_testing_line_output(self, line):
        super().on_testing_line_output(line)
        text = line.strip()
        m = CASE_RE.match(text)
        if m:
            status = TestStatus.PASSED if m.group(1) == "PASS" else TestStatus.FAILED
            message = m.group(3) if status == TestStatus.FAILED else None
            self.test_suite.add_case(TestCase(m.group(2), status, message=message, stdout=text))
            return
        if DONE_RE.match(text):
            self._done = True

    def stage_testing(self):
        try:
            super().stage_testing()
        finally:
            if not self.options.without_testing and not self._done:
                self.test_suite.add_case(TestCase(
                    "kernel_tests", TestStatus.ERRORED,
                    message="the test firmware stopped before printing DONE",
                    exception=RuntimeError("the test firmware stopped before printing DONE")))
