/* GENERATED FILE - do not edit by hand.
 * Made by: mnist-mcu compile model/mlp.onnx --backend deepc
 *   (mnist_mcu.deepc_backend: deepC 0.13 onnx2cpp, adapted to firmware/include/model.h)
 * Source model sha256: c9e86733f5483ee76e6295256b378de18177f722d34103a251d2268fc76f4db6 */
/* deepC 0.13 operator code (dnnc runtime headers, prepared by
 * firmware/scripts/deepc_env.py), driven through the model.h interface.
 * Weight tensors are built once by model_init() in static storage and never
 * destroyed: a deepC tensor built on a pointer would free it, and these point at
 * the const weight arrays in flash (deepc_weights.cpp). The input and the
 * intermediate tensors live on the heap only from their creation to their last
 * use; each operator lives on the stack for its one compute. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <new>
#include <utility>

#include "operators/Flatten.h"
#include "operators/Gemm.h"
#include "operators/Relu.h"
#include "operators/Softmax.h"

#include "deepc_weights.h"
#include "model.h"

using namespace dnnc;

/* deepC reports operator errors here (core/macros.h patched with DNNC_NO_STDIO). */
static volatile int g_dnnc_errors;
extern "C" void dnnc_report(int level, int line) {
  (void)line;
  if (level >= 2) g_dnnc_errors++;
}

#if defined(__arm__) && !defined(__linux__)
/* libstdc++'s <random> (included by deepC's tensor.h unless DNNC_LEAN) refers to
 * getentropy; newlib has none on bare metal. Weak so a board support package may provide it. */
extern "C" __attribute__((weak)) int getentropy(void *buf, size_t len) {
  (void)buf; (void)len;
  errno = ENOSYS;
  return -1;
}
/* Static C++ objects (deepC's NULL_TENSOR<T>) register destructors with
 * __cxa_atexit(.., &__dso_handle); -nostartfiles drops crtbegin.o, which defines it. */
extern "C" {
__attribute__((weak)) void *__dso_handle = nullptr;
}
#if !defined(__cpp_exceptions)
/* Built with -fno-exceptions: what would throw (libstdc++'s out of memory or length
 * errors) ends in abort(); stop with a fault the board support reports, instead of
 * newlib's abort(), which links raise() and signal handling. Weak: a BSP may define it. */
extern "C" __attribute__((weak, noreturn)) void abort(void) { __builtin_trap(); }
#endif
#endif

/* Storage for one object whose lifetime this file controls (placement new). */
template <typename T> class dnnc_slot {
  alignas(T) unsigned char mem_[sizeof(T)];

public:
  template <typename... A> T &make(A &&...args) { return *new (mem_) T(std::forward<A>(args)...); }
  T &get() { return *reinterpret_cast<T *>(mem_); }
  void destroy() { get().~T(); }
};

/* Pixel 0..255 -> ((p / 255) - 0.1307) / 0.3081, computed in float32 by the generator
 * exactly as the training pipeline does (mnist_mcu.data.normalise). */
static const float k_pixel_lut[256] = {
    -4.2421296e-01f, -4.1148472e-01f, -3.987565e-01f, -3.8602826e-01f, -3.7330002e-01f, -3.605718e-01f, -3.4784356e-01f, -3.3511534e-01f,
    -3.223871e-01f, -3.0965886e-01f, -2.9693064e-01f, -2.842024e-01f, -2.7147415e-01f, -2.5874594e-01f, -2.460177e-01f, -2.3328947e-01f,
    -2.205612e-01f, -2.0783298e-01f, -1.9510475e-01f, -1.823765e-01f, -1.6964827e-01f, -1.5692005e-01f, -1.4419182e-01f, -1.3146357e-01f,
    -1.1873534e-01f, -1.06007114e-01f, -9.327888e-02f, -8.055065e-02f, -6.782241e-02f, -5.509418e-02f, -4.2365946e-02f, -2.9637715e-02f,
    -1.6909458e-02f, -4.1812244e-03f, 8.547009e-03f, 2.127524e-02f, 3.4003474e-02f, 4.6731707e-02f, 5.945994e-02f, 7.2188176e-02f,
    8.4916405e-02f, 9.764464e-02f, 1.1037287e-01f, 1.2310111e-01f, 1.3582934e-01f, 1.4855757e-01f, 1.612858e-01f, 1.7401403e-01f,
    1.8674228e-01f, 1.994705e-01f, 2.1219873e-01f, 2.2492696e-01f, 2.3765521e-01f, 2.5038344e-01f, 2.6311168e-01f, 2.758399e-01f,
    2.8856814e-01f, 3.0129635e-01f, 3.140246e-01f, 3.2675284e-01f, 3.3948106e-01f, 3.522093e-01f, 3.6493754e-01f, 3.7766576e-01f,
    3.9039403e-01f, 4.0312228e-01f, 4.1585052e-01f, 4.2857873e-01f, 4.4130698e-01f, 4.5403522e-01f, 4.6676344e-01f, 4.7949168e-01f,
    4.9221992e-01f, 5.0494814e-01f, 5.1767635e-01f, 5.304046e-01f, 5.4313284e-01f, 5.5586106e-01f, 5.685893e-01f, 5.8131754e-01f,
    5.9404576e-01f, 6.0677403e-01f, 6.1950225e-01f, 6.3223046e-01f, 6.4495873e-01f, 6.5768695e-01f, 6.7041516e-01f, 6.831434e-01f,
    6.9587165e-01f, 7.0859987e-01f, 7.213281e-01f, 7.3405635e-01f, 7.4678457e-01f, 7.595128e-01f, 7.7224106e-01f, 7.849693e-01f,
    7.976975e-01f, 8.1042576e-01f, 8.231539e-01f, 8.358821e-01f, 8.486104e-01f, 8.613386e-01f, 8.740668e-01f, 8.867951e-01f,
    8.995233e-01f, 9.1225153e-01f, 9.249798e-01f, 9.37708e-01f, 9.5043623e-01f, 9.631645e-01f, 9.758927e-01f, 9.8862094e-01f,
    1.0013492e+00f, 1.0140774e+00f, 1.0268056e+00f, 1.0395339e+00f, 1.0522621e+00f, 1.0649904e+00f, 1.0777186e+00f, 1.0904468e+00f,
    1.103175e+00f, 1.1159033e+00f, 1.1286315e+00f, 1.1413597e+00f, 1.154088e+00f, 1.1668162e+00f, 1.1795444e+00f, 1.1922727e+00f,
    1.2050011e+00f, 1.2177293e+00f, 1.2304575e+00f, 1.2431858e+00f, 1.2559141e+00f, 1.2686423e+00f, 1.2813705e+00f, 1.2940987e+00f,
    1.306827e+00f, 1.3195552e+00f, 1.3322834e+00f, 1.3450117e+00f, 1.3577399e+00f, 1.3704681e+00f, 1.3831964e+00f, 1.3959246e+00f,
    1.4086528e+00f, 1.4213811e+00f, 1.4341093e+00f, 1.4468375e+00f, 1.4595658e+00f, 1.472294e+00f, 1.4850222e+00f, 1.4977505e+00f,
    1.5104787e+00f, 1.523207e+00f, 1.5359352e+00f, 1.5486634e+00f, 1.5613916e+00f, 1.5741198e+00f, 1.5868481e+00f, 1.5995764e+00f,
    1.6123046e+00f, 1.6250328e+00f, 1.637761e+00f, 1.6504892e+00f, 1.6632175e+00f, 1.6759458e+00f, 1.688674e+00f, 1.7014022e+00f,
    1.7141304e+00f, 1.7268586e+00f, 1.7395868e+00f, 1.7523152e+00f, 1.7650434e+00f, 1.7777716e+00f, 1.7904998e+00f, 1.803228e+00f,
    1.8159562e+00f, 1.8286846e+00f, 1.8414128e+00f, 1.854141e+00f, 1.8668692e+00f, 1.8795974e+00f, 1.8923256e+00f, 1.905054e+00f,
    1.9177822e+00f, 1.9305104e+00f, 1.9432386e+00f, 1.9559668e+00f, 1.968695e+00f, 1.9814233e+00f, 1.9941516e+00f, 2.0068798e+00f,
    2.019608e+00f, 2.0323362e+00f, 2.0450644e+00f, 2.0577927e+00f, 2.0705209e+00f, 2.083249e+00f, 2.0959773e+00f, 2.1087058e+00f,
    2.121434e+00f, 2.1341622e+00f, 2.1468904e+00f, 2.1596186e+00f, 2.1723468e+00f, 2.185075e+00f, 2.1978033e+00f, 2.2105315e+00f,
    2.2232597e+00f, 2.235988e+00f, 2.248716e+00f, 2.2614443e+00f, 2.2741728e+00f, 2.286901e+00f, 2.2996292e+00f, 2.3123574e+00f,
    2.3250856e+00f, 2.3378139e+00f, 2.350542e+00f, 2.3632703e+00f, 2.3759985e+00f, 2.3887267e+00f, 2.401455e+00f, 2.4141831e+00f,
    2.4269114e+00f, 2.4396398e+00f, 2.452368e+00f, 2.4650962e+00f, 2.4778244e+00f, 2.4905527e+00f, 2.5032809e+00f, 2.516009e+00f,
    2.5287373e+00f, 2.5414655e+00f, 2.5541937e+00f, 2.566922e+00f, 2.5796502e+00f, 2.5923786e+00f, 2.6051068e+00f, 2.617835e+00f,
    2.6305633e+00f, 2.6432915e+00f, 2.6560197e+00f, 2.668748e+00f, 2.681476e+00f, 2.6942043e+00f, 2.7069325e+00f, 2.7196608e+00f,
    2.732389e+00f, 2.7451172e+00f, 2.7578456e+00f, 2.7705739e+00f, 2.783302e+00f, 2.7960303e+00f, 2.8087585e+00f, 2.8214867e+00f
};

static dnnc_slot<tensor<float>> g_dnnc_t_0_1_weight;
static dnnc_slot<tensor<float>> g_dnnc_t_0_1_bias;
static dnnc_slot<tensor<float>> g_dnnc_t_0_3_weight;
static dnnc_slot<tensor<float>> g_dnnc_t_0_3_bias;
static bool g_ready;

static const model_info_t k_info = {"mlp", "deepc", "f32", 784, 10};

extern "C" const model_info_t *model_info(void) { return &k_info; }

extern "C" int model_init(void) {
  if (g_ready) return 0;
  g_dnnc_errors = 0;
  DNNC_TRY {
    g_dnnc_t_0_1_weight.make(const_cast<float *>(deepc_w_t_0_1_weight), std::vector<size_t>{100, 784}, "t_0_1_weight");
    g_dnnc_t_0_1_bias.make(const_cast<float *>(deepc_w_t_0_1_bias), std::vector<size_t>{100}, "t_0_1_bias");
    g_dnnc_t_0_3_weight.make(const_cast<float *>(deepc_w_t_0_3_weight), std::vector<size_t>{10, 100}, "t_0_3_weight");
    g_dnnc_t_0_3_bias.make(const_cast<float *>(deepc_w_t_0_3_bias), std::vector<size_t>{10}, "t_0_3_bias");
  } DNNC_CATCH(...) {
    return -1;
  }
  if (g_dnnc_errors) return -1;
  g_ready = true;
  return 0;
}

static uint32_t nn_stamps[7];
static const model_layer_t nn_layers[6] = {
    {"input_normalisation", "InputLUT", 0u},
    {"t_0_0_0_Flatten", "Flatten", 0u},
    {"t_0_0_1_Gemm", "Gemm", 78400u},
    {"t_0_0_2_Relu", "Relu", 0u},
    {"t_0_0_3_Gemm", "Gemm", 1000u},
    {"t_1_Softmax", "Softmax", 0u},
};

const model_layer_t *model_layers(uint16_t *count)
{
    *count = 6u;
    return nn_layers;
}

const uint32_t *model_layer_stamps(void)
{
    return nn_stamps;
}

extern "C" int model_run(const uint8_t *pixels, float *outputs) {
  if (!g_ready && model_init() != 0) return -1;
  nn_stamps[0] = model_clock();
  g_dnnc_errors = 0;
  int rc = 0;
  DNNC_TRY {
    tensor<float> &dnnc_t_0_1_weight = g_dnnc_t_0_1_weight.get();
    tensor<float> &dnnc_t_0_1_bias = g_dnnc_t_0_1_bias.get();
    tensor<float> &dnnc_t_0_3_weight = g_dnnc_t_0_3_weight.get();
    tensor<float> &dnnc_t_0_3_bias = g_dnnc_t_0_3_bias.get();
    dnnc_slot<tensor<float>> s_0;
    dnnc_slot<tensor<float>> s_1;

    /* the input, then deepC's graph as onnx2cpp wrote it (results held in slots) */
    float *x = static_cast<float *>(malloc(784 * sizeof(float)));
    if (!x) return -4;
    for (size_t i = 0; i < 784; i++) x[i] = k_pixel_lut[pixels[i]];
    tensor<float> &dnnc_input = s_0.make(x, std::vector<size_t>{1, 1, 28, 28}, "input");
    nn_stamps[1] = model_clock();
    { /* t_0_0_0_Flatten */
      Flatten<float> t_0_0_0_Flatten("t_0_0_0_Flatten");
      int t_0_0_0_Flatten_axis = 1 ;
      t_0_0_0_Flatten.setAttribute ( attr_axis, t_0_0_0_Flatten_axis );
      s_1.make(t_0_0_0_Flatten.compute ( dnnc_input));
    }
    tensor<float> &dnnc_t_0_0_0_Flatten_t_0_0_0_Flatten_output_0 = s_1.get();
    s_0.destroy();
    nn_stamps[2] = model_clock();
    { /* t_0_0_1_Gemm */
      Gemm<float, float, float> t_0_0_1_Gemm("t_0_0_1_Gemm");
      float t_0_0_1_Gemm_alpha = 1.000000 ;
      t_0_0_1_Gemm.setAttribute ( attr_alpha, t_0_0_1_Gemm_alpha );
      float t_0_0_1_Gemm_beta = 1.000000 ;
      t_0_0_1_Gemm.setAttribute ( attr_beta, t_0_0_1_Gemm_beta );
      int t_0_0_1_Gemm_transB = 1 ;
      t_0_0_1_Gemm.setAttribute ( attr_transB, t_0_0_1_Gemm_transB );
      s_0.make(t_0_0_1_Gemm.compute ( dnnc_t_0_0_0_Flatten_t_0_0_0_Flatten_output_0, dnnc_t_0_1_weight, dnnc_t_0_1_bias));
    }
    tensor<float> &dnnc_t_0_0_1_Gemm_t_0_0_1_Gemm_output_0 = s_0.get();
    s_1.destroy();
    nn_stamps[3] = model_clock();
    { /* t_0_0_2_Relu */
      Relu<float, float> t_0_0_2_Relu("t_0_0_2_Relu");
      s_1.make(t_0_0_2_Relu.compute ( dnnc_t_0_0_1_Gemm_t_0_0_1_Gemm_output_0));
    }
    tensor<float> &dnnc_t_0_0_2_Relu_t_0_0_2_Relu_output_0 = s_1.get();
    s_0.destroy();
    nn_stamps[4] = model_clock();
    { /* t_0_0_3_Gemm */
      Gemm<float, float, float> t_0_0_3_Gemm("t_0_0_3_Gemm");
      float t_0_0_3_Gemm_alpha = 1.000000 ;
      t_0_0_3_Gemm.setAttribute ( attr_alpha, t_0_0_3_Gemm_alpha );
      float t_0_0_3_Gemm_beta = 1.000000 ;
      t_0_0_3_Gemm.setAttribute ( attr_beta, t_0_0_3_Gemm_beta );
      int t_0_0_3_Gemm_transB = 1 ;
      t_0_0_3_Gemm.setAttribute ( attr_transB, t_0_0_3_Gemm_transB );
      s_0.make(t_0_0_3_Gemm.compute ( dnnc_t_0_0_2_Relu_t_0_0_2_Relu_output_0, dnnc_t_0_3_weight, dnnc_t_0_3_bias));
    }
    tensor<float> &dnnc_t_0_0_3_Gemm_t_0_0_3_Gemm_output_0 = s_0.get();
    s_1.destroy();
    nn_stamps[5] = model_clock();
    { /* t_1_Softmax */
      Softmax<float> t_1_Softmax("t_1_Softmax");
      int t_1_Softmax_axis = 1 ;
      t_1_Softmax.setAttribute ( attr_axis, t_1_Softmax_axis );
      s_1.make(t_1_Softmax.compute ( dnnc_t_0_0_3_Gemm_t_0_0_3_Gemm_output_0));
    }
    tensor<float> &dnnc_t_1_Softmax_output = s_1.get();
    s_0.destroy();
    nn_stamps[6] = model_clock();

    if (g_dnnc_errors || dnnc_t_1_Softmax_output.length() != k_info.output_size)
      rc = -2;
    else
      for (size_t i = 0; i < k_info.output_size; i++) outputs[i] = dnnc_t_1_Softmax_output[i];
    s_1.destroy();
  } DNNC_CATCH(...) {
    return -3;
  }
  return rc;
}
