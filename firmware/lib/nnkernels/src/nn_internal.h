/* Helpers shared by the int8 kernels (not part of the public API). */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include "nn_runtime.h"

/* On cores with the DSP extension (Cortex-M4/M7/M33) the kernels use SXTB16 + SMLAD
 * (two 16-bit MACs per instruction); elsewhere a portable C path computes the same
 * integers.  -DNN_NO_DSP forces the portable path. */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(NN_NO_DSP)
#include <arm_acle.h>
#define NN_USE_DSP 1
#else
#define NN_USE_DSP 0
#endif

static inline int32_t pack16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16));
}

#if NN_USE_DSP
#define MAC_LO(acc, wd, v) acc = __smlad(__sxtb16(wd), v, acc)
/* SXTB16 with its built-in ROR #8 (GCC 12's ACLE has no __ror to fold) */
static inline int32_t sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#define MAC_HI(acc, wd, v) acc = __smlad(sxtb16_ror8(wd), v, acc)
#else
/* v.lo * byte0 + v.hi * byte2  /  v.lo * byte1 + v.hi * byte3 */
#define VLO(v) ((int32_t)(int16_t)((uint32_t)(v)&0xffffu))
#define VHI(v) ((int32_t)(int16_t)((uint32_t)(v) >> 16))
#define MAC_LO(acc, wd, v) acc += (int32_t)(int8_t)(wd)*VLO(v) + (int32_t)(int8_t)((wd) >> 16) * VHI(v)
#define MAC_HI(acc, wd, v)                                                                                   \
    acc += (int32_t)(int8_t)((wd) >> 8) * VLO(v) + (int32_t)(int8_t)((wd) >> 24) * VHI(v)
#endif

/* round-half-up fixed point (see nn_requant in nn_runtime.h) */
static inline int32_t requant32(int32_t acc, int32_t mult, int shift)
{
    int64_t p = (int64_t)acc * (int64_t)mult + ((int64_t)1 << (shift - 1));
    p >>= shift; /* arithmetic shift (two's complement targets) */
    if (p > 0x7fffffff)
        p = 0x7fffffff;
    if (p < -0x7fffffff - 1)
        p = -0x7fffffff - 1;
    return (int32_t)p;
}

static inline int8_t clamp8(int32_t v, int lo, int hi) { return (int8_t)(v < lo ? lo : (v > hi ? hi : v)); }

/* int32 accumulator -> int8 output: requantise, bound (so adding the zero point cannot
 * overflow), add the zero point, clamp to [lo, hi] (which also applies a fused ReLU). */
static inline int8_t requant_s8(int32_t acc, int32_t mult, int shift, int zp, int lo, int hi)
{
    int32_t r = requant32(acc, mult, shift);
    if (r > 0x10000)
        r = 0x10000;
    if (r < -0x10000)
        r = -0x10000;
    return clamp8(r + zp, lo, hi);
}

/* int32 accumulator -> float output, with an optional fused ReLU. */
static inline float dequant_f32(int32_t acc, float scale, int relu)
{
    return (float)((relu && acc < 0) ? 0 : acc) * scale;
}

/* requant_s8 for shift >= 33, cheaper.  For shift >= 33 (every
 * layer of a real model: the multiplier m * 2^-shift is below 2^-2) the rounded product
 * needs only the high word of acc * m (one SMULL):
 *   (acc*m + 2^(s-1)) >> s  ==  ((hi >> (s-33)) + 1) >> 1,   hi = (acc*m) >> 32,
 * exact because the dropped low word adds less than one unit before each floor.  |hi| <
 * 2^30, so adding the zero point cannot overflow, and clamping once to [lo, hi] gives
 * what the reference's clamps give. */
static inline int8_t requant_hi(int32_t acc, int32_t m, int s, int zp, int lo, int hi)
{
    const int32_t h = (int32_t)(((int64_t)acc * m) >> 32);
    int32_t v = ((h >> (s - 33)) + 1) >> 1;
#if NN_USE_DSP
    v = __ssat(v + zp, 8); /* [lo, hi] lies within [-128, 127] */
#else
    v += zp;
    v = v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
    v = v < lo ? lo : v;
    return (int8_t)(v > hi ? hi : v);
}

#endif /* NN_INTERNAL_H */
