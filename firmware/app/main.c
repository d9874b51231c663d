/* Device side of docs/protocol.md: answer every frame, forever. The model
 * library (model.h) and the board support (bsp.h) are the only dependencies. */
#include "bsp.h"
#include "handlers.h"
#include "link.h"
#ifdef FAULT_TEST
#include "fault_test.h"
#endif

int main(void)
{
    bsp_init();
    handlers_init();
    for (;;) {
        frame_t frame;
        link_status_t st = link_receive(&frame);
        if (st.code != 0)
            link_send_error(frame.seq, st.code, st.detail);
#ifdef FAULT_TEST
        else if (fault_test_handle(&frame))
            continue;
#endif
        else
            handle_frame(&frame);
    }
}
