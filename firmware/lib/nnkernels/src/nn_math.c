/* Deterministic exp/log and softmax: only +, -, *, / and integer bit operations,
 * evaluated in a fixed order, so every IEEE-754 single-precision target (host
 * SSE, Cortex-M4F FPv4, QEMU) produces the same bits.  Build with
 * -ffp-contract=off so no multiply-add gets fused. */
#include "nn_runtime.h"

typedef union {
    float f;
    uint32_t u;
} nn_fbits;

float nn_expf(float x)
{
    if (x < -87.0f)
        return 0.0f;
    if (x > 88.0f)
        x = 88.0f;
    float t = x * 1.44269502f;                      /* x / ln 2 */
    int n = (int)(t >= 0.0f ? t + 0.5f : t - 0.5f); /* round half away */
    float nf = (float)n;
    float r = x - nf * 0.693145752f; /* Cody-Waite: ln2 high part */
    r = r - nf * 1.42860677e-06f;    /* ln2 low part */
    float p = 1.98412701e-04f;       /* 1/5040 */
    p = p * r + 1.38888892e-03f;
    p = p * r + 8.33333377e-03f;
    p = p * r + 4.16666679e-02f;
    p = p * r + 1.66666672e-01f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    nn_fbits s;
    s.u = (uint32_t)(n + 127) << 23; /* 2^n, n in [-126, 127] */
    return p * s.f;
}

float nn_logf(float x)
{
    if (!(x > 0.0f))
        return -88.0f; /* callers pass sums >= 1 */
    nn_fbits b;
    b.f = x;
    int e = (int)((b.u >> 23) & 0xffu) - 127;
    b.u = (b.u & 0x007fffffu) | 0x3f800000u; /* mantissa in [1, 2) */
    float m = b.f;
    if (m > 1.41421354f) {
        m = m * 0.5f;
        e = e + 1;
    }
    float z = (m - 1.0f) / (m + 1.0f);
    float z2 = z * z;
    float p = 0.111111112f; /* 1/9 */
    p = p * z2 + 0.142857149f;
    p = p * z2 + 0.200000003f;
    p = p * z2 + 0.333333343f;
    p = p * z2 + 1.0f;
    float lm = 2.0f * z * p;
    return (float)e * 0.693147182f + lm;
}

void nn_softmax_f32(const float *x, float *y, int outer, int n)
{
    for (int o = 0; o < outer; o++, x += n, y += n) {
        float m = x[0];
        for (int i = 1; i < n; i++)
            if (x[i] > m)
                m = x[i];
        float s = 0.0f;
        for (int i = 0; i < n; i++) {
            float e = nn_expf(x[i] - m);
            y[i] = e;
            s = s + e;
        }
        for (int i = 0; i < n; i++)
            y[i] = y[i] / s;
    }
}

void nn_logsoftmax_f32(const float *x, float *y, int outer, int n)
{
    for (int o = 0; o < outer; o++, x += n, y += n) {
        float m = x[0];
        for (int i = 1; i < n; i++)
            if (x[i] > m)
                m = x[i];
        float s = 0.0f;
        for (int i = 0; i < n; i++)
            s = s + nn_expf(x[i] - m);
        float ls = nn_logf(s);
        for (int i = 0; i < n; i++)
            y[i] = (x[i] - m) - ls;
    }
}
