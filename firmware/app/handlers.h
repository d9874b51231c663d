/* Request handlers: each answers one frame with exactly one reply. */
#ifndef HANDLERS_H
#define HANDLERS_H

#include "link.h"

/* Runs model_init() once; its result is reported by INFER if it failed. */
void handlers_init(void);

void handle_frame(const frame_t *frame);

#endif
