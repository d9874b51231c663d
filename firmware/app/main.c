/* Device side of docs/protocol.md: answer every frame, forever. The model
 * library (model.h) and the board support (bsp.h) are the only dependencies. */
#include "bsp.h"
#include "handlers.h"
#include "link.h"

int main(void)
{
    bsp_init();
    handlers_init();
    for (;;) {
        frame_t frame;
        link_status_t st = link_receive(&frame);
        if (st.code != 0)
            link_send_error(frame.seq, st.code, st.detail);
        else
            handle_frame(&frame);
    }
}
