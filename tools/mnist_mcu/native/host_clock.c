/* model.h's clock for the host build of a model library: the host runs compare outputs,
 * not time, so every per-layer stamp reads 0 (on a board the application supplies its tick
 * counter). */
#include <stdint.h>

#include "model.h"

uint32_t model_clock(void) { return 0; }
