/* Kernel library of the native backend (C99, no malloc, no libm, no I/O).
 * Each optimised kernel has a plain reference kernel beside it (suffix _ref);
 * tests run both on the same vectors. */
#ifndef NN_RUNTIME_H
#define NN_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- deterministic math (same bits with glibc, newlib, any IEEE-754 FPU) ---- */
float nn_expf(float x);
float nn_logf(float x);
/* softmax / log-softmax over rows of n; may run in place (y == x) */
void nn_softmax_f32(const float *x, float *y, int outer, int n);
void nn_logsoftmax_f32(const float *x, float *y, int outer, int n);

/* ---- float32 kernels ---- */
void nn_lut_u8_f32(const uint8_t *x, const float *lut, float *y, int n);
/* y[o] = b[o] + sum_i w[o*n_in + i] * x[i]   (w output-major) */
void nn_dense_ref_f32(const float *x, const float *w, const float *b, float *y, int n_in, int n_out,
                      int relu);
/* same result, wt input-major (wt[i*n_out + o]); only nonzero inputs are visited
 * (gathered four at a time on the stack: no scratch memory).  x and y must not overlap. */
void nn_dense_f32(const float *x, const float *wt, const float *b, float *y, int n_in, int n_out, int relu);
void nn_dense_u8_f32(const uint8_t *x, const float *wt, const float *b, float *y, int n_in, int n_out,
                     int relu);
void nn_conv2d_f32(const float *x, const float *w, const float *b, float *y, int C, int H, int W, int M,
                   int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl, int relu);
void nn_maxpool2d_f32(const float *x, float *y, int C, int H, int W, int KH, int KW, int OH, int OW, int sh,
                      int sw, int pt, int pl);
void nn_relu_f32(const float *x, float *y, int n);
void nn_add_f32(const float *a, const float *b, float *y, int n);
void nn_matmul_f32(const float *a, const float *b, float *y, int m, int k, int n);

/* ---- int8 kernels (int32 accumulation, fixed-point requantisation) ---- */
void nn_lut_u8_s8(const uint8_t *x, const int8_t *lut, int8_t *y, int n);
/* acc[o] = bias[o] + sum_i w[o][i] * (x[i] - zx), visiting only the input pairs
 * (x[2k], x[2k+1]) that are not both zero: gathered on the stack (up to 96 at a time, 768 B;
 * no scratch memory), then two pairs per pass over the weights (nn_dense_s8_m4.S on the DSP
 * extension; a ten-output layer keeps every accumulator in a register instead).
 * Packed weights, one row of words per input pair:
 * w[k*nw + j] = w[2j][2k], w[2j+1][2k], w[2j][2k+1], w[2j+1][2k+1] (bytes, low first),
 * nw = ceil(n_out/2), with the bytes of even outputs (w[2j][.], padding too) stored + 128
 * (bit 7 flipped; ops/gemm.py pack_pairs).  acc must not overlap x. */
void nn_dense_pairs_u8(const uint8_t *x, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out);
void nn_dense_pairs_s8(const int8_t *x, int zx, int n_in, const uint32_t *w, int nw, const int32_t *bias,
                       int32_t *acc, int n_out);
/* references: w int8 output-major [n_out][n_in] */
void nn_dense_ref_u8(const uint8_t *x, const int8_t *w, const int32_t *bias, int32_t *acc, int n_in,
                     int n_out);
void nn_dense_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int32_t *acc, int n_in,
                     int n_out);
/* round-half-up fixed-point: (acc * mult + 2^(shift-1)) >> shift, then + zp, clamp.
 * The _ch kernels may run in place (y at the address of acc): each accumulator is
 * read before its bytes are overwritten. */
int32_t nn_requant(int32_t acc, int32_t mult, int shift);
void nn_requant_ch_s8(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                      const int8_t *shift, int zp, int lo, int hi);
/* reference for nn_requant_ch_s8 (same arguments, same integers) */
void nn_requant_ch_s8_ref(const int32_t *acc, int8_t *y, int n_ch, int inner, const int32_t *mult,
                          const int8_t *shift, int zp, int lo, int hi);
void nn_dequant_ch_f32(const int32_t *acc, float *y, int n_ch, int inner, const float *scale, int relu);
void nn_dequant_s8_f32(const int8_t *x, float *y, int n, float scale, int zp);
/* int8 conv: requantised int8 output, or (yf != 0) dequantised float output */
void nn_conv2d_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int C, int H, int W, int M,
                  int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl, const int32_t *mult,
                  const int8_t *shift, int zy, int lo, int hi, int8_t *y, const float *dq_scale, float *yf,
                  int relu);
/* reference for nn_conv2d_s8 (same arguments, same integers) */
void nn_conv2d_ref_s8(const int8_t *x, int zx, const int8_t *w, const int32_t *bias, int C, int H, int W,
                      int M, int KH, int KW, int OH, int OW, int sh, int sw, int pt, int pl,
                      const int32_t *mult, const int8_t *shift, int zy, int lo, int hi, int8_t *y,
                      const float *dq_scale, float *yf, int relu);
void nn_maxpool2d_s8(const int8_t *x, int8_t *y, int C, int H, int W, int KH, int KW, int OH, int OW, int sh,
                     int sw, int pt, int pl);
/* reference for nn_maxpool2d_s8 */
void nn_maxpool2d_s8_ref(const int8_t *x, int8_t *y, int C, int H, int W, int KH, int KW, int OH, int OW,
                         int sh, int sw, int pt, int pl);
void nn_relu_s8(const int8_t *x, int8_t *y, int n, int zp);

#ifdef __cplusplus
}
#endif

#endif /* NN_RUNTIME_H */
