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

#ifdef __cplusplus
}
#endif

#endif /* MODEL_H */
