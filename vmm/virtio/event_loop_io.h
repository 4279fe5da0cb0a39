/* event_loop_io: an addition to event_loop.h that the devices need (the
 * lead owns that header; this belongs there). */
#ifndef WARREN_VMM_EVENT_LOOP_IO_H
#define WARREN_VMM_EVENT_LOOP_IO_H

struct event_loop;

/* Asks the kernel to cancel every queued readv/writev/fsync whose callback
 * opaque is `opaque` (e.g. reads parked on an idle tap). Their callbacks
 * still run once, with -ECANCELED or their real result. Returns how many
 * were asked, or -EBUSY when the submission queue is full. */
int event_loop__cancel_io(struct event_loop *loop, void *opaque);

#endif
