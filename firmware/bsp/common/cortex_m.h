/* Cortex-M4 core registers used by the board support (no CMSIS dependency). */
#ifndef CORTEX_M_H
#define CORTEX_M_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* System control block */
#define SCB_CPACR REG32(0xE000ED88u) /* coprocessor access (FPU = CP10/CP11) */
#define SCB_CFSR REG32(0xE000ED28u)  /* configurable fault status */
#define SCB_HFSR REG32(0xE000ED2Cu)  /* hard fault status */
#define SCB_SHCSR REG32(0xE000ED24u) /* system handler control and state */
#define SCB_CCR REG32(0xE000ED14u)   /* configuration and control */
#define SCB_MMFAR REG32(0xE000ED34u) /* MemManage fault address (valid if CFSR.MMARVALID) */
#define SCB_BFAR REG32(0xE000ED38u)  /* BusFault address (valid if CFSR.BFARVALID) */

/* MPU (PMSAv7, 8 regions on the M4) */
#define MPU_TYPE REG32(0xE000ED90u)
#define MPU_CTRL REG32(0xE000ED94u)
#define MPU_RNR REG32(0xE000ED98u)
#define MPU_RBAR REG32(0xE000ED9Cu)
#define MPU_RASR REG32(0xE000EDA0u)
#define MPU_CTRL_ENABLE (1u << 0)
#define MPU_CTRL_PRIVDEFENA (1u << 2) /* default memory map for everything outside the regions */
#define MPU_RASR_ENABLE (1u << 0)
#define MPU_RASR_XN (1u << 28)

#define SHCSR_FAULTS_ENA ((1u << 16) | (1u << 17) | (1u << 18)) /* Mem/Bus/Usage */
#define CCR_DIV_0_TRP (1u << 4)

/* SysTick: 24-bit down counter */
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1 = processor clock */

/* NVIC */
#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICER(n) REG32(0xE000E180u + 4u * (n))
#define NVIC_ISPR(n) REG32(0xE000E200u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))

/* Debug cycle counter (real silicon; reads 0 under QEMU) */
#define DEMCR REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)
#define DWT_CTRL_CYCCNTENA (1u << 0)

static inline void dsb_isb(void) { __asm__ volatile("dsb\n\tisb" ::: "memory"); }

#endif /* CORTEX_M_H */
