/* The one C interface between the application and every model library
 * (deepC, native f32, native int8). Generated libraries implement it. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;     /* model name, e.g. "mlp" */
    const char *backend;  /* "deepc" or "native" */
    const char *dtype;    /* "f32" or "int8" */
    uint16_t input_size;  /* number of uint8 pixels taken by model_run (784) */
    uint16_t output_size; /* number of float outputs written by model_run (10) */
} model_info_t;

const model_info_t *model_info(void);

/* Called once at start-up; returns 0 on success. */
int model_init(void);

/* pixels: input_size raw pixels 0..255 (the library applies the training
 * normalisation itself); outputs: output_size floats, the model's outputs.
 * Returns 0 on success. */
int model_run(const uint8_t *pixels, float *outputs);

/* Per-layer profile. A library calls model_clock() (supplied by the application: the
 * board's tick counter) before its first layer and after every layer of model_run, so
 * layer i of the last run took stamps[i + 1] - stamps[i] ticks. */
typedef struct {
    const char *name; /* the ONNX node's name */
    const char *op;   /* operator, e.g. "Gemm+Relu" */
    uint32_t macs;    /* multiply-accumulates per inference (0 for elementwise work) */
} model_layer_t;

uint32_t model_clock(void);

/* The layer table (count entries) and the count + 1 stamps of the last model_run. */
const model_layer_t *model_layers(uint16_t *count);
const uint32_t *model_layer_stamps(void);

#ifdef __cplusplus
}
#endif

#endif /* MODEL_H */
