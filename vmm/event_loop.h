/* event_loop: the one io_uring of a VMM process. Everything that is not a
 * vCPU runs here, on one thread: ioeventfd notifications, the control
 * socket, timers and every byte of device I/O (block reads/writes/flushes,
 * tap reads/writes). Callbacks run on the loop thread, one at a time.
 *
 * Ownership: an operation's iovecs and buffers must stay valid until its
 * callback ran. A callback gets the CQE result (bytes, or -errno) and, for
 * multishot polls, is called once per event until it returns false or the
 * poll is cancelled. */
#ifndef WARREN_VMM_EVENT_LOOP_H
#define WARREN_VMM_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event_loop;

/* Returns true to keep a multishot poll armed; ignored for one-shot ops. */
typedef bool (*event_loop_callback)(void *opaque, int32_t result);

/* Creates a loop with room for `entries` in-flight submissions. NULL on
 * error. Its ring is restricted to the operations below (io_uring
 * restrictions: poll add/remove, readv/writev, read/write fixed, fsync,
 * fallocate, timeout, cancel; registering buffers): anything else, e.g. an
 * openat or a socket, fails with -EACCES, since seccomp cannot filter
 * what a ring does. */
struct event_loop *event_loop__create(unsigned entries);
/* The loop's ring (struct io_uring), for tests of its restrictions. */
void *event_loop__ring(struct event_loop *loop);
void event_loop__destroy(struct event_loop *loop);

/* Watches fd for poll_mask (POLLIN...) with a multishot poll; callback per
 * event. Returns an id for event_loop__cancel, or -errno. */
int64_t event_loop__watch(struct event_loop *loop, int fd, unsigned poll_mask,
			  event_loop_callback callback, void *opaque);
/* Positioned vectored read/write (offset -1: current position, for taps and
 * sockets); fsync (datasync when `datasync`). Return 0 once queued, or -errno. */
int event_loop__readv(struct event_loop *loop, int fd, const struct iovec *iov, int iovcnt,
		      int64_t offset, event_loop_callback callback, void *opaque);
int event_loop__writev(struct event_loop *loop, int fd, const struct iovec *iov, int iovcnt,
		       int64_t offset, event_loop_callback callback, void *opaque);
int event_loop__fsync(struct event_loop *loop, int fd, bool datasync, event_loop_callback callback,
		      void *opaque);
/* fallocate(fd, mode, offset, length) on the loop's io_uring (the kernel
 * runs it on a worker: it may block). 0 once queued, or -errno. */
int event_loop__fallocate(struct event_loop *loop, int fd, int mode, int64_t offset, int64_t length,
			  event_loop_callback callback, void *opaque);
/* Busy-polls up to max_ns (adaptive, see event_loop.c) for the next
 * completion before sleeping in the kernel: trades CPU for wake-up
 * latency. 0 (the default) never spins. Loop thread or before run. */
void event_loop__set_polling(struct event_loop *loop, uint64_t max_ns);
/* While the loop busy-polls (above), it also calls each poller in turn;
 * a poller looks for work without a system call (e.g. a virtqueue's avail
 * index) and does it, returning true when it found some. At most
 * EVENT_LOOP_MAX_POLLERS. Loop thread. add returns an id or -ENOSPC. */
#define EVENT_LOOP_MAX_POLLERS 16
int event_loop__add_poller(struct event_loop *loop, bool (*poller)(void *opaque), void *opaque);
void event_loop__remove_poller(struct event_loop *loop, int id);
/* Registers [base, base + length) (guest RAM) with the kernel as fixed
 * buffers, in pieces of at most 1 GiB (io_uring's limit; the pages are
 * pinned once), so read_fixed/write_fixed skip the per-I/O page pinning
 * that O_DIRECT readv/writev pay. Once per loop, before the seccomp
 * filter: 0, -EEXIST when this range is already registered, or -errno
 * (callers keep using readv/writev). */
int event_loop__register_memory(struct event_loop *loop, void *base, uint64_t length);
/* The registered piece that holds [address, address + length) wholly, or -1. */
int event_loop__fixed_index(const struct event_loop *loop, const void *address, uint64_t length);
/* One read/write of a single buffer inside registered piece `index`. */
int event_loop__read_fixed(struct event_loop *loop, int fd, void *buffer, uint32_t length,
			   int64_t offset, int index, event_loop_callback callback, void *opaque);
int event_loop__write_fixed(struct event_loop *loop, int fd, const void *buffer, uint32_t length,
			    int64_t offset, int index, event_loop_callback callback, void *opaque);
/* One-shot poll: callback once, with the revents when fd became ready for
 * poll_mask (or -ECANCELED after event_loop__cancel). Returns an id for
 * event_loop__cancel, or -errno. */
int64_t event_loop__poll_once(struct event_loop *loop, int fd, unsigned poll_mask,
			      event_loop_callback callback, void *opaque);
/* One-shot timer after `nanoseconds`; the callback gets -ETIME when it fired. */
int64_t event_loop__timer(struct event_loop *loop, uint64_t nanoseconds,
			  event_loop_callback callback, void *opaque);
/* Cancels a watch or timer by id; its callback is called once with -ECANCELED. */
int event_loop__cancel(struct event_loop *loop, int64_t id);

/* Submits what is queued and runs callbacks until event_loop__stop() or an
 * unrecoverable io_uring error (returned as -errno; 0 after a stop). */
int event_loop__run(struct event_loop *loop);
/* Thread-safe: wakes the loop and makes event_loop__run return. */
void event_loop__stop(struct event_loop *loop);
/* Thread-safe: runs fn(opaque) on the loop thread soon (e.g. from a vCPU). */
int event_loop__defer(struct event_loop *loop, void (*fn)(void *opaque), void *opaque);

#endif
