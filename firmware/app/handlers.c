#include "handlers.h"

#include <string.h>

#include "bsp.h"
#include "image.h"
#include "model.h"
#include "protocol.h"

/* Compile-time limits of the application's buffers (override with -D).
 * A model with more inputs or outputs gets ERROR model-failed (detail 0xFF)
 * to every INFER; INFO still reports its sizes. */
#ifndef APP_MAX_INPUT
#define APP_MAX_INPUT 784u /* 28 x 28 pixels */
#endif
#ifndef APP_MAX_OUTPUTS
#define APP_MAX_OUTPUTS 32u
#endif
#ifndef APP_MAX_LAYERS
#define APP_MAX_LAYERS 8u /* layers with running statistics (PROFILE); later ones report the last run only */
#endif
#define MAX_STR 32u /* INFO strings are cut to this many bytes */
#define DETAIL_MODEL_TOO_BIG 0xFFu

/* Largest reply payloads (docs/protocol.md). */
#define INFO_MAX (1u + 2u + 2u + 7u * 4u + 4u * (1u + MAX_STR) + 1u)

/* Boards whose tick counter is the DWT cycle counter (BSP_TICK_DWT, set in the board
 * JSON) count real cycles; the others are emulated twins whose SysTick runs on QEMU's
 * virtual clock, which under -icount counts instructions, not cycles. */
#ifdef BSP_TICK_DWT
#define APP_TICK_UNIT TICK_CYCLES
#else
#define APP_TICK_UNIT TICK_EMULATED
#endif
#define INFER_MAX (1u + 1u + 1u + 4u * APP_MAX_OUTPUTS + 4u) /* INFER_BATCH: index first */
#define PROFILE_MAX (1u + 1u + 4u + 1u + 4u + 8u + 4u + 4u + 2u * (1u + MAX_STR))
#define MAX2(a, b) ((a) > (b) ? (a) : (b))
#define REPLY_MAX MAX2(MAX2(INFO_MAX, INFER_MAX), PROFILE_MAX)

_Static_assert(1u + APP_MAX_INPUT <= BODY_MAX - BODY_OVERHEAD, "a raw image must fit in one frame");
_Static_assert(APP_MAX_OUTPUTS <= 255u, "the INFER reply counts outputs in a u8");
_Static_assert(REPLY_MAX <= BODY_MAX - BODY_OVERHEAD, "every reply must fit in one frame");

static uint8_t pixels[APP_MAX_INPUT];
static float outputs[APP_MAX_OUTPUTS];
static uint8_t reply[REPLY_MAX]; /* payload only: link_send streams the frame */
static int init_rc;

/* Per-layer statistics over the successful inferences since reset (or PROFILE_CLEAR). */
static uint32_t profile_runs;
static uint64_t layer_sum[APP_MAX_LAYERS];
static uint32_t layer_max[APP_MAX_LAYERS];

/* Little-endian writer over the reply buffer. */
typedef struct {
    uint8_t *p;
    size_t n;
} writer_t;

static void put_u8(writer_t *w, uint8_t v) { w->p[w->n++] = v; }
static void put_u16(writer_t *w, uint16_t v)
{
    put_u8(w, (uint8_t)v);
    put_u8(w, (uint8_t)(v >> 8));
}
static void put_u32(writer_t *w, uint32_t v)
{
    put_u16(w, (uint16_t)v);
    put_u16(w, (uint16_t)(v >> 16));
}

static void put_u64(writer_t *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_f32(writer_t *w, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u32(w, bits);
}

/* Plain loops here and in image.c keep newlib's strlen/memcpy/memset (0.7 KB) out of the
 * flash (app_os.py stops GCC from turning such loops back into those calls). */
static void put_str(writer_t *w, const char *s)
{
    size_t len = 0;
    while (s && len < MAX_STR && s[len])
        len++;
    put_u8(w, (uint8_t)len);
    for (size_t i = 0; i < len; i++)
        put_u8(w, (uint8_t)s[i]);
}

void handlers_init(void) { init_rc = model_init(); }

static void handle_info(const frame_t *f)
{
    const model_info_t *m = model_info();
    writer_t w = {reply, 0};
    put_u8(&w, PROTOCOL_VERSION);
    put_u16(&w, m->input_size);
    put_u16(&w, m->output_size);
    put_u32(&w, bsp_cpu_hz());
    put_u32(&w, bsp_tick_hz());
    put_u32(&w, bsp_flash_used());
    put_u32(&w, bsp_static_ram());
    put_u32(&w, bsp_heap_peak());
    put_u32(&w, bsp_stack_peak());
    put_u32(&w, bsp_stack_size());
    put_str(&w, m->name);
    put_str(&w, m->backend);
    put_str(&w, m->dtype);
    put_str(&w, bsp_board_name());
    put_u8(&w, APP_TICK_UNIT);
    link_send(MSG_INFO | MSG_REPLY, f->seq, reply, w.n);
}

static uint8_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (uint8_t)best;
}

/* Model library clock for the per-layer stamps (model.h). */
uint32_t model_clock(void) { return bsp_ticks(); }

static uint32_t layer_ticks(const uint32_t *stamps, uint16_t i) { return stamps[i + 1u] - stamps[i]; }

/* Runs after the timed model_run, so it adds nothing to the ticks it measures. */
static void profile_add(void)
{
    uint16_t count;
    (void)model_layers(&count);
    const uint32_t *stamps = model_layer_stamps();
    for (uint16_t i = 0; i < count && i < APP_MAX_LAYERS; i++) {
        uint32_t t = layer_ticks(stamps, i);
        layer_sum[i] += t;
        if (t > layer_max[i])
            layer_max[i] = t;
    }
    profile_runs++;
}

static void handle_profile(const frame_t *f)
{
    if (f->len != 2) {
        link_send_error(f->seq, ERR_BAD_PAYLOAD, DETAIL_BAD_LENGTH);
        return;
    }
    uint16_t count;
    const model_layer_t *layers = model_layers(&count);
    uint8_t index = f->payload[0];
    writer_t w = {reply, 0};
    put_u8(&w, (uint8_t)(count > 255u ? 255u : count));
    put_u8(&w, index);
    put_u32(&w, profile_runs);
    if (index < count) {
        int kept = index < APP_MAX_LAYERS;
        put_u8(&w, (uint8_t)kept);
        put_u32(&w, layer_ticks(model_layer_stamps(), index)); /* 0 before the first run */
        put_u64(&w, kept ? layer_sum[index] : 0u);
        put_u32(&w, kept ? layer_max[index] : 0u);
        put_u32(&w, layers[index].macs);
        put_str(&w, layers[index].op);
        put_str(&w, layers[index].name);
    }
    if (f->payload[1] & PROFILE_CLEAR) {
        profile_runs = 0;
        for (unsigned i = 0; i < APP_MAX_LAYERS; i++) {
            layer_sum[i] = 0;
            layer_max[i] = 0;
        }
    }
    link_send(MSG_PROFILE | MSG_REPLY, f->seq, reply, w.n);
}

/* INFER (batch 0): one image that fills the payload, one reply. INFER_BATCH (batch 1,
 * version 5): images back to back, each self-delimiting (image.h), one reply per image in
 * order with the image's index first; the first bad image ends the batch with an ERROR.
 * A batch saves the 6 frame bytes per image that the wire (an emulated UART's cost, a
 * board's baud rate) would otherwise carry. */
static void handle_infer(const frame_t *f, int batch)
{
    const model_info_t *m = model_info();
    uint8_t err = ERR_BAD_PAYLOAD, detail = DETAIL_BAD_LENGTH;
    if (f->len < 1)
        goto fail;
    err = ERR_MODEL;
    detail = (uint8_t)init_rc;
    if (init_rc != 0)
        goto fail;
    detail = DETAIL_MODEL_TOO_BIG;
    if (m->input_size > APP_MAX_INPUT || m->output_size > APP_MAX_OUTPUTS)
        goto fail;
    for (size_t pos = 0, index = 0; pos < f->len; index++) {
        size_t used;
        err = ERR_BAD_PAYLOAD;
        detail = DETAIL_BAD_LENGTH;
        if (index > 255u) /* the reply's index is a u8 */
            goto fail;
        detail = (uint8_t)image_decode(f->payload[pos], f->payload + pos + 1, f->len - pos - 1, &used, pixels,
                                       m->input_size);
        pos += 1u + used;
        if (!detail && !batch && pos != f->len)
            detail = DETAIL_BAD_IMAGE; /* trailing bytes */
        if (detail)
            goto fail;
        uint32_t t0 = bsp_ticks();
        int rc = model_run(pixels, outputs);
        uint32_t t1 = bsp_ticks();
        err = ERR_MODEL;
        detail = (uint8_t)rc;
        if (rc != 0)
            goto fail;
        profile_add();
        writer_t w = {reply, 0};
        if (batch)
            put_u8(&w, (uint8_t)index);
        put_u8(&w, argmax(outputs, m->output_size));
        put_u8(&w, (uint8_t)m->output_size);
        for (size_t i = 0; i < m->output_size; i++)
            put_f32(&w, outputs[i]);
        put_u32(&w, t1 - t0);
        link_send(f->type | MSG_REPLY, f->seq, reply, w.n);
    }
    return;
fail:
    link_send_error(f->seq, err, detail);
}

void handle_frame(const frame_t *f)
{
    switch (f->type) {
    case MSG_INFO:
        if (f->len != 0)
            link_send_error(f->seq, ERR_BAD_PAYLOAD, DETAIL_BAD_LENGTH);
        else
            handle_info(f);
        break;
    case MSG_INFER:
    case MSG_INFER_BATCH:
        handle_infer(f, f->type == MSG_INFER_BATCH);
        break;
    case MSG_PROFILE:
        handle_profile(f);
        break;
    default:
        link_send_error(f->seq, ERR_UNKNOWN_TYPE, f->type);
        break;
    }
}
