"""A device FAULT report in one line: which fault (from IPSR and the fault status registers)
and where (the stacked PC and LR, symbolised with arm-none-eabi-addr2line against the ELF)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage fault", 5: "BusFault", 6: "UsageFault"}

# CFSR bits (ARMv7-M ARM B3.2.15): MemManage 0-7, BusFault 8-15, UsageFault 16-31.
CFSR_BITS = [
    (1 << 0, "instruction fetch from a no-access region"),
    (1 << 1, "data access violation"),
    (1 << 3, "MPU fault while unstacking"),
    (1 << 4, "MPU fault while stacking"),
    (1 << 5, "MPU fault during lazy FP stacking"),
    (1 << 8, "instruction bus error"),
    (1 << 9, "precise data bus error"),
    (1 << 10, "imprecise data bus error"),
    (1 << 11, "bus error while unstacking"),
    (1 << 12, "bus error while stacking"),
    (1 << 13, "bus error during lazy FP stacking"),
    (1 << 16, "undefined instruction"),
    (1 << 17, "invalid EPSR state (Thumb bit)"),
    (1 << 18, "invalid EXC_RETURN"),
    (1 << 19, "no coprocessor (FPU off?)"),
    (1 << 24, "unaligned access"),
    (1 << 25, "divide by zero"),
]
MMARVALID, BFARVALID = 1 << 7, 1 << 15
STACKING = (1 << 4) | (1 << 12)
HFSR_FORCED, HFSR_VECTTBL = 1 << 30, 1 << 1


def fault_name(f) -> str:
    """'UsageFault: divide by zero', 'MemManage fault: stack overflow ...', ..."""
    ipsr = f.ipsr if f.ipsr is not None else 0  # 0: a version-1 report without IPSR
    kind = EXCEPTIONS.get(ipsr, "fault")
    if ipsr >= 16:
        return f"unexpected interrupt (IRQ {ipsr - 16}, no handler)"
    causes = [text for bit, text in CFSR_BITS if f.cfsr & bit]
    if f.cfsr & MMARVALID and f.mmfar is not None:
        causes.append(f"address {f.mmfar:#010x}")
    if f.cfsr & BFARVALID and f.bfar is not None:
        causes.append(f"address {f.bfar:#010x}")
    if f.cfsr & STACKING:
        causes.insert(0, "stack overflow (the stack ran into its guard)")
    if ipsr == 3 and f.hfsr & HFSR_FORCED:
        causes.insert(0, "escalated")
    if ipsr == 3 and f.hfsr & HFSR_VECTTBL:
        causes.insert(0, "vector table read error")
    return kind + (": " + ", ".join(causes) if causes else "")


def symbolise(elf: Path | None, addr: int) -> str | None:
    """'function (file:line)' for a code address, from addr2line; None if unknown."""
    tool = shutil.which("arm-none-eabi-addr2line")
    if not tool or not elf or not Path(elf).is_file() or not addr:
        return None
    try:
        out = subprocess.run([tool, "-f", "-C", "-e", str(elf), f"{addr & ~1:#x}"],
                             capture_output=True, text=True, timeout=10, check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    func, loc = (out + ["", ""])[:2]
    if func in ("", "??"):
        return None
    loc = loc.split(" (discriminator")[0]
    if not loc.startswith("??"):
        try:
            loc = str(Path(loc).resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            pass
        return f"{func} ({loc})"
    return func


def explain(f, elf: Path | None = None) -> str:
    """One line: the fault, then where it happened (symbolised when the ELF is known)."""
    parts = [fault_name(f)]
    if f.pc or f.lr:
        where = symbolise(elf, f.pc)
        parts.append(f"at pc {f.pc:#010x}" + (f" {where}" if where else ""))
        caller = symbolise(elf, f.lr) if f.lr and f.lr < 0xF0000000 else None
        parts.append(f"lr {f.lr:#010x}" + (f" {caller}" if caller else ""))
    elif f.sp is not None:
        parts.append("pc not available: the exception frame could not be stacked")
    if f.sp is not None:
        parts.append(f"sp {f.sp:#010x}")
    parts.append(f"cfsr {f.cfsr:#010x} hfsr {f.hfsr:#010x}")
    return "; ".join(parts)
