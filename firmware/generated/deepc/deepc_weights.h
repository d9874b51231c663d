/* GENERATED FILE - do not edit by hand.
 * Made by: mnist-mcu compile model/mlp.onnx --backend deepc
 *   (mnist_mcu.deepc_backend: deepC 0.13 onnx2cpp, adapted to firmware/include/model.h)
 * Source model sha256: c9e86733f5483ee76e6295256b378de18177f722d34103a251d2268fc76f4db6 */
#ifndef DEEPC_WEIGHTS_H
#define DEEPC_WEIGHTS_H

#include <stdint.h>

extern const float deepc_w_t_0_1_weight[78400]; /* t_0_1_weight [100, 784] */
extern const float deepc_w_t_0_1_bias[100]; /* t_0_1_bias [100] */
extern const float deepc_w_t_0_3_weight[1000]; /* t_0_3_weight [10, 100] */
extern const float deepc_w_t_0_3_bias[10]; /* t_0_3_bias [10] */

#endif
