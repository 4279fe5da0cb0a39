/* event_loop: the one io_uring of a VMM process (contract in event_loop.h).
 *
 * Every submission carries, as its user_data, a pointer to a small
 * operation record from a fixed pool sized at creation (bounded memory: a
 * full pool answers -EBUSY instead of allocating). A watch or timer id
 * encodes the record's index and a generation counter, so a stale id (the
 * operation already completed and its record was reused) is refused with
 * -ENOENT instead of cancelling someone else's operation.
 *
 * Cross-thread entry points (event_loop__stop, event_loop__defer) only
 * touch a mutex-protected bounded queue and an eventfd; the loop watches
 * that eventfd with an internal multishot poll.
 *
 * Cancellation: once event_loop__cancel() returned 0 the callback is
 * called exactly once more, with -ECANCELED, even when the kernel had
 * already completed the operation (events racing with the cancel are
 * swallowed). A multishot poll whose callback returns false is removed
 * silently. A multishot poll the kernel ends on its own (e.g. on CQ
 * overflow) is re-armed transparently.
 *
 * Destroying the loop drops pending operations without calling their
 * callbacks (io_uring_queue_exit cancels them in the kernel). */
#include "event_loop.h"
#include "warren/clock.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum operation_kind {
	OPERATION_FREE = 0,
	OPERATION_WATCH,
	OPERATION_READV,
	OPERATION_WRITEV,
	OPERATION_FSYNC,
	OPERATION_FALLOCATE,
	OPERATION_TIMER,
	OPERATION_POLL_ONCE,
	OPERATION_WAKE, /* internal: the eventfd for stop/defer */
};

struct operation {
	enum operation_kind kind;
	bool cancelled; /* event_loop__cancel() accepted: deliver -ECANCELED once */
	bool dropped;	/* callback asked to stop: swallow everything, free at the end */
	uint32_t generation;
	int fd;
	unsigned poll_mask;
	event_loop_callback callback;
	void *opaque;
	struct __kernel_timespec timeout;
	struct operation *next_free;
};

struct deferred_call {
	void (*fn)(void *opaque);
	void *opaque;
};

struct event_loop {
	struct io_uring ring;
	struct operation *operations;
	unsigned operation_count;
	struct operation *free_list;
	struct operation wake;
	int wake_fd;
	atomic_bool stop_requested;

	/* Adaptive busy-polling before sleeping (event_loop__set_polling). */
	uint64_t poll_max_ns, poll_ns;
	bool deferred_task_work; /* IORING_SETUP_DEFER_TASKRUN: completions need io_uring_enter */
	/* Registered memory (event_loop__register_memory): pieces of <= 1 GiB. */
	uint8_t *fixed_base;
	uint64_t fixed_length;
	unsigned fixed_pieces;
	struct {
		bool (*poller)(void *opaque);
		void *opaque;
	} pollers[EVENT_LOOP_MAX_POLLERS];

	pthread_mutex_t deferred_lock;
	struct deferred_call *deferred; /* ring buffer */
	unsigned deferred_capacity;
	unsigned deferred_head;
	unsigned deferred_count;
};

#define DEFERRED_MIN_CAPACITY 256u
#define IGNORED_USER_DATA     0ull /* cancel/remove SQEs: their CQE is dropped */

static struct operation *operation__get(struct event_loop *loop)
{
	struct operation *operation = loop->free_list;

	if (!operation)
		return NULL;
	loop->free_list = operation->next_free;
	operation->next_free = NULL;
	operation->cancelled = false;
	operation->dropped = false;
	return operation;
}

static void operation__put(struct event_loop *loop, struct operation *operation)
{
	if (operation == &loop->wake)
		return;
	operation->kind = OPERATION_FREE;
	operation->callback = NULL;
	operation->opaque = NULL;
	operation->generation = (operation->generation + 1) & 0x7fffffffu;
	operation->next_free = loop->free_list;
	loop->free_list = operation;
}

static int64_t operation__id(struct event_loop *loop, struct operation *operation)
{
	uint64_t index = (uint64_t)(operation - loop->operations);

	return (int64_t)(((uint64_t)operation->generation << 32) | index);
}

/* An SQE, flushing the submission queue once when it is full. */
static struct io_uring_sqe *event_loop__sqe(struct event_loop *loop)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

	if (!sqe) {
		io_uring_submit(&loop->ring);
		sqe = io_uring_get_sqe(&loop->ring);
	}
	return sqe;
}

static int event_loop__arm_poll(struct event_loop *loop, struct operation *operation)
{
	struct io_uring_sqe *sqe = event_loop__sqe(loop);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, operation->fd, operation->poll_mask);
	io_uring_sqe_set_data(sqe, operation);
	return 0;
}

/* The ring only does what the loop's operations need (seccomp does not
 * see io_uring operations: without this, a compromised VMM could open
 * files or sockets through its ring). Registered while the ring is
 * disabled (IORING_SETUP_R_DISABLED), then the ring is enabled. 0 or
 * -errno. */
static int event_loop__restrict(struct io_uring *ring)
{
	static const uint8_t operations[] = {
	    IORING_OP_POLL_ADD,	  IORING_OP_POLL_REMOVE,  IORING_OP_READV, IORING_OP_WRITEV,
	    IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED,  IORING_OP_FSYNC, IORING_OP_FALLOCATE,
	    IORING_OP_TIMEOUT,	  IORING_OP_ASYNC_CANCEL,
	};
	static const uint8_t register_operations[] = {
	    IORING_REGISTER_BUFFERS,
	    IORING_UNREGISTER_BUFFERS,
	};
	struct io_uring_restriction restrictions[sizeof(operations) + sizeof(register_operations)];
	unsigned count = 0;

	memset(restrictions, 0, sizeof(restrictions));
	for (size_t i = 0; i < sizeof(operations); i++) {
		restrictions[count].opcode = IORING_RESTRICTION_SQE_OP;
		restrictions[count++].sqe_op = operations[i];
	}
	for (size_t i = 0; i < sizeof(register_operations); i++) {
		restrictions[count].opcode = IORING_RESTRICTION_REGISTER_OP;
		restrictions[count++].register_op = register_operations[i];
	}
	/* Raw io_uring_register(2): Debian 12's liburing 2.3 declares the
	 * helpers but does not export them. */
	if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS,
		    restrictions, count) < 0 ||
	    syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) <
		0)
		return -errno;
	return 0;
}

struct event_loop *event_loop__create(unsigned entries)
{
	struct event_loop *loop;
	unsigned i;
	int ret;

	if (entries == 0 || entries > 32768)
		return NULL;
	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return NULL;
	loop->wake_fd = -1;
	/* +1: the internal wake poll; cancel SQEs are not operations. One
	 * thread submits and reaps: completions' task work then runs when the
	 * loop asks for events, without an inter-processor signal per
	 * completion (DEFER_TASKRUN; kernels before 6.1 get the default). */
	{
		struct io_uring_params params = {
		    .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			     IORING_SETUP_R_DISABLED,
		};

		ret = io_uring_queue_init_params(entries + 1, &loop->ring, &params);
		loop->deferred_task_work = ret == 0;
		if (ret == -EINVAL) {
			memset(&params, 0, sizeof(params));
			params.flags = IORING_SETUP_R_DISABLED;
			ret = io_uring_queue_init_params(entries + 1, &loop->ring, &params);
		}
	}
	if (ret < 0) {
		free(loop);
		errno = -ret;
		return NULL;
	}
	ret = event_loop__restrict(&loop->ring);
	if (ret < 0) {
		io_uring_queue_exit(&loop->ring);
		free(loop);
		errno = -ret;
		return NULL;
	}
	loop->operation_count = entries;
	loop->operations = calloc(entries, sizeof(*loop->operations));
	loop->deferred_capacity = entries > DEFERRED_MIN_CAPACITY ? entries : DEFERRED_MIN_CAPACITY;
	loop->deferred = calloc(loop->deferred_capacity, sizeof(*loop->deferred));
	if (!loop->operations || !loop->deferred)
		goto err;
	for (i = entries; i-- > 0;) {
		loop->operations[i].generation = 1;
		loop->operations[i].next_free = loop->free_list;
		loop->free_list = &loop->operations[i];
	}
	pthread_mutex_init(&loop->deferred_lock, NULL);
	atomic_init(&loop->stop_requested, false);

	loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wake_fd < 0)
		goto err_mutex;
	loop->wake.kind = OPERATION_WAKE;
	loop->wake.fd = loop->wake_fd;
	loop->wake.poll_mask = POLLIN;
	if (event_loop__arm_poll(loop, &loop->wake) < 0)
		goto err_mutex;
	return loop;

err_mutex:
	pthread_mutex_destroy(&loop->deferred_lock);
err:
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	io_uring_queue_exit(&loop->ring);
	free(loop->operations);
	free(loop->deferred);
	free(loop);
	errno = ENOMEM;
	return NULL;
}

void *event_loop__ring(struct event_loop *loop)
{
	return &loop->ring;
}

void event_loop__destroy(struct event_loop *loop)
{
	if (!loop)
		return;
	io_uring_queue_exit(&loop->ring);
	close(loop->wake_fd);
	pthread_mutex_destroy(&loop->deferred_lock);
	free(loop->operations);
	free(loop->deferred);
	free(loop);
}

int64_t event_loop__watch(struct event_loop *loop, int fd, unsigned poll_mask,
			  event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	int ret;

	if (fd < 0 || !callback)
		return -EINVAL;
	operation = operation__get(loop);
	if (!operation)
		return -EBUSY;
	operation->kind = OPERATION_WATCH;
	operation->fd = fd;
	operation->poll_mask = poll_mask;
	operation->callback = callback;
	operation->opaque = opaque;
	ret = event_loop__arm_poll(loop, operation);
	if (ret < 0) {
		operation__put(loop, operation);
		return ret;
	}
	return operation__id(loop, operation);
}

/* Takes an operation record and an SQE for one submission and fills the
 * fields every submission shares; NULL (nothing held) when either is
 * exhausted. */
static struct operation *event_loop__start(struct event_loop *loop, enum operation_kind kind,
					   int fd, event_loop_callback callback, void *opaque,
					   struct io_uring_sqe **sqe)
{
	struct operation *operation = operation__get(loop);

	if (!operation)
		return NULL;
	*sqe = event_loop__sqe(loop);
	if (!*sqe) {
		operation__put(loop, operation);
		return NULL;
	}
	operation->kind = kind;
	operation->fd = fd;
	operation->callback = callback;
	operation->opaque = opaque;
	return operation;
}

static int event_loop__rw(struct event_loop *loop, enum operation_kind kind, int fd,
			  const struct iovec *iov, int iovcnt, int64_t offset,
			  event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (fd < 0 || !callback || iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov) ||
	    offset < -1)
		return -EINVAL;
	operation = event_loop__start(loop, kind, fd, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	/* offset -1 (as u64) means "current file position" to io_uring. */
	if (kind == OPERATION_READV)
		io_uring_prep_readv(sqe, fd, iov, (unsigned)iovcnt, (uint64_t)offset);
	else
		io_uring_prep_writev(sqe, fd, iov, (unsigned)iovcnt, (uint64_t)offset);
	io_uring_sqe_set_data(sqe, operation);
	return 0;
}

int event_loop__readv(struct event_loop *loop, int fd, const struct iovec *iov, int iovcnt,
		      int64_t offset, event_loop_callback callback, void *opaque)
{
	return event_loop__rw(loop, OPERATION_READV, fd, iov, iovcnt, offset, callback, opaque);
}

int event_loop__writev(struct event_loop *loop, int fd, const struct iovec *iov, int iovcnt,
		       int64_t offset, event_loop_callback callback, void *opaque)
{
	return event_loop__rw(loop, OPERATION_WRITEV, fd, iov, iovcnt, offset, callback, opaque);
}

int event_loop__fsync(struct event_loop *loop, int fd, bool datasync, event_loop_callback callback,
		      void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (fd < 0 || !callback)
		return -EINVAL;
	operation = event_loop__start(loop, OPERATION_FSYNC, fd, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
	io_uring_sqe_set_data(sqe, operation);
	return 0;
}

#define FIXED_PIECE	 (1ull << 30)
#define FIXED_MAX_PIECES 64

int event_loop__register_memory(struct event_loop *loop, void *base, uint64_t length)
{
	struct iovec pieces[FIXED_MAX_PIECES];
	unsigned count = 0;
	int ret;

	if (loop->fixed_pieces)
		return (uint8_t *)base == loop->fixed_base && length == loop->fixed_length ? -EEXIST
											   : -EBUSY;
	if (!base || !length || length > FIXED_PIECE * FIXED_MAX_PIECES)
		return -EINVAL;
	for (uint64_t offset = 0; offset < length; offset += FIXED_PIECE, count++) {
		pieces[count].iov_base = (uint8_t *)base + offset;
		pieces[count].iov_len =
		    length - offset < FIXED_PIECE ? length - offset : FIXED_PIECE;
	}
	ret = io_uring_register_buffers(&loop->ring, pieces, count);
	if (ret < 0)
		return ret;
	loop->fixed_base = base;
	loop->fixed_length = length;
	loop->fixed_pieces = count;
	return 0;
}

int event_loop__fixed_index(const struct event_loop *loop, const void *address, uint64_t length)
{
	uint64_t offset, piece;

	if (!loop->fixed_pieces || (const uint8_t *)address < loop->fixed_base)
		return -1;
	offset = (uint64_t)((const uint8_t *)address - loop->fixed_base);
	if (offset >= loop->fixed_length || length > loop->fixed_length - offset)
		return -1;
	piece = offset / FIXED_PIECE;
	if (length && (offset + length - 1) / FIXED_PIECE != piece)
		return -1; /* crosses into the next piece */
	return (int)piece;
}

static int event_loop__fixed(struct event_loop *loop, enum operation_kind kind, int fd,
			     void *buffer, uint32_t length, int64_t offset, int index,
			     event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (fd < 0 || !callback || offset < 0 || index < 0 || (unsigned)index >= loop->fixed_pieces)
		return -EINVAL;
	operation = event_loop__start(loop, kind, fd, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	if (kind == OPERATION_READV)
		io_uring_prep_read_fixed(sqe, fd, buffer, length, (uint64_t)offset, index);
	else
		io_uring_prep_write_fixed(sqe, fd, buffer, length, (uint64_t)offset, index);
	io_uring_sqe_set_data(sqe, operation);
	return 0;
}

int event_loop__read_fixed(struct event_loop *loop, int fd, void *buffer, uint32_t length,
			   int64_t offset, int index, event_loop_callback callback, void *opaque)
{
	return event_loop__fixed(loop, OPERATION_READV, fd, buffer, length, offset, index, callback,
				 opaque);
}

int event_loop__write_fixed(struct event_loop *loop, int fd, const void *buffer, uint32_t length,
			    int64_t offset, int index, event_loop_callback callback, void *opaque)
{
	return event_loop__fixed(loop, OPERATION_WRITEV, fd, (void *)buffer, length, offset, index,
				 callback, opaque);
}

int event_loop__fallocate(struct event_loop *loop, int fd, int mode, int64_t offset, int64_t length,
			  event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (fd < 0 || !callback || offset < 0 || length <= 0)
		return -EINVAL;
	operation = event_loop__start(loop, OPERATION_FALLOCATE, fd, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	io_uring_prep_fallocate(sqe, fd, mode, (uint64_t)offset, (uint64_t)length);
	io_uring_sqe_set_data(sqe, operation);
	return 0;
}

int64_t event_loop__poll_once(struct event_loop *loop, int fd, unsigned poll_mask,
			      event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (fd < 0 || !callback)
		return -EINVAL;
	operation = event_loop__start(loop, OPERATION_POLL_ONCE, fd, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, poll_mask);
	io_uring_sqe_set_data(sqe, operation);
	return operation__id(loop, operation);
}

int64_t event_loop__timer(struct event_loop *loop, uint64_t nanoseconds,
			  event_loop_callback callback, void *opaque)
{
	struct operation *operation;
	struct io_uring_sqe *sqe;

	if (!callback)
		return -EINVAL;
	operation = event_loop__start(loop, OPERATION_TIMER, -1, callback, opaque, &sqe);
	if (!operation)
		return -EBUSY;
	operation->timeout.tv_sec = (long long)(nanoseconds / 1000000000ull);
	operation->timeout.tv_nsec = (long long)(nanoseconds % 1000000000ull);
	/* The timespec lives in the record, valid until the CQE arrives. */
	io_uring_prep_timeout(sqe, &operation->timeout, 0, 0);
	io_uring_sqe_set_data(sqe, operation);
	return operation__id(loop, operation);
}

/* Asks io_uring to cancel one in-flight operation; its CQE still comes. */
static int event_loop__cancel_operation(struct event_loop *loop, struct operation *operation)
{
	struct io_uring_sqe *sqe = event_loop__sqe(loop);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel(sqe, operation, 0);
	io_uring_sqe_set_data64(sqe, IGNORED_USER_DATA);
	operation->cancelled = true;
	return 0;
}

int event_loop__cancel(struct event_loop *loop, int64_t id)
{
	uint64_t index = (uint64_t)id & 0xffffffffu;
	uint32_t generation = (uint32_t)((uint64_t)id >> 32);
	struct operation *operation;

	if (id < 0 || index >= loop->operation_count)
		return -ENOENT;
	operation = &loop->operations[index];
	if (operation->generation != generation ||
	    (operation->kind != OPERATION_WATCH && operation->kind != OPERATION_TIMER &&
	     operation->kind != OPERATION_POLL_ONCE))
		return -ENOENT;
	if (operation->cancelled || operation->dropped)
		return -EALREADY;
	return event_loop__cancel_operation(loop, operation);
}

static void event_loop__run_deferred(struct event_loop *loop)
{
	struct deferred_call call;
	uint64_t counter;

	/* Drain the eventfd first so a defer racing with us wakes us again. */
	while (read(loop->wake_fd, &counter, sizeof(counter)) == sizeof(counter))
		;
	for (;;) {
		pthread_mutex_lock(&loop->deferred_lock);
		if (loop->deferred_count == 0) {
			pthread_mutex_unlock(&loop->deferred_lock);
			return;
		}
		call = loop->deferred[loop->deferred_head];
		loop->deferred_head = (loop->deferred_head + 1) % loop->deferred_capacity;
		loop->deferred_count--;
		pthread_mutex_unlock(&loop->deferred_lock);
		call.fn(call.opaque);
	}
}

static void event_loop__complete(struct event_loop *loop, struct io_uring_cqe *cqe)
{
	struct operation *operation = io_uring_cqe_get_data(cqe);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	bool keep;

	if (!operation)
		return;
	switch (operation->kind) {
	case OPERATION_WAKE:
		event_loop__run_deferred(loop);
		if (!more)
			event_loop__arm_poll(loop, &loop->wake);
		return;
	case OPERATION_WATCH:
		if (operation->cancelled || operation->dropped) {
			if (more)
				return; /* events racing with the cancel */
			if (operation->cancelled && !operation->dropped)
				operation->callback(operation->opaque, -ECANCELED);
			operation__put(loop, operation);
			return;
		}
		keep = operation->callback(operation->opaque, cqe->res);
		if (!keep) {
			operation->dropped = true;
			if (more) {
				struct io_uring_sqe *sqe = event_loop__sqe(loop);

				if (sqe) {
					io_uring_prep_poll_remove(sqe,
								  (uint64_t)(uintptr_t)operation);
					io_uring_sqe_set_data64(sqe, IGNORED_USER_DATA);
				}
				return; /* freed when the final CQE arrives */
			}
			operation__put(loop, operation);
			return;
		}
		/* The kernel ended the multishot poll (error or overflow). */
		if (!more) {
			if (cqe->res >= 0 && event_loop__arm_poll(loop, operation) == 0)
				return;
			if (cqe->res >= 0)
				operation->callback(operation->opaque, -EBUSY);
			operation__put(loop, operation);
		}
		return;
	case OPERATION_TIMER:
	case OPERATION_POLL_ONCE:
		operation->callback(operation->opaque,
				    operation->cancelled ? -ECANCELED : cqe->res);
		operation__put(loop, operation);
		return;
	case OPERATION_READV:
	case OPERATION_WRITEV:
	case OPERATION_FSYNC:
	case OPERATION_FALLOCATE: {
		event_loop_callback callback = operation->callback;
		void *opaque = operation->opaque;

		/* Free first: the callback may queue the next operation. */
		operation__put(loop, operation);
		callback(opaque, cqe->res);
		return;
	}
	case OPERATION_FREE:
		return;
	}
}

void event_loop__set_polling(struct event_loop *loop, uint64_t max_ns)
{
	loop->poll_max_ns = max_ns;
	loop->poll_ns = max_ns / 4;
}

int event_loop__add_poller(struct event_loop *loop, bool (*poller)(void *opaque), void *opaque)
{
	for (int i = 0; i < EVENT_LOOP_MAX_POLLERS; i++)
		if (!loop->pollers[i].poller) {
			loop->pollers[i].poller = poller;
			loop->pollers[i].opaque = opaque;
			return i;
		}
	return -ENOSPC;
}

void event_loop__remove_poller(struct event_loop *loop, int id)
{
	if (id >= 0 && id < EVENT_LOOP_MAX_POLLERS)
		loop->pollers[id].poller = NULL;
}

static bool event_loop__run_pollers(struct event_loop *loop)
{
	bool found = false;

	for (int i = 0; i < EVENT_LOOP_MAX_POLLERS; i++)
		if (loop->pollers[i].poller && loop->pollers[i].poller(loop->pollers[i].opaque))
			found = true;
	return found;
}

/* Spins up to poll_ns for a completion or a poller's work before the
 * caller sleeps; adapts poll_ns (QEMU's AioContext rule): an event that
 * came while spinning keeps the window; one that came later than the
 * window but within poll_max_ns doubles it; an idle wait (nothing within
 * poll_max_ns) halves it. Returns true when there is something to do. */
static bool event_loop__poll(struct event_loop *loop)
{
	uint64_t deadline;

	if (!loop->poll_max_ns)
		return false;
	io_uring_submit(&loop->ring);
	if (io_uring_cq_ready(&loop->ring))
		return true;
	deadline = clock__monotonic_ns() + loop->poll_ns;
	while (!io_uring_cq_ready(&loop->ring)) {
		if (loop->deferred_task_work && io_uring_get_events(&loop->ring) == 0 &&
		    io_uring_cq_ready(&loop->ring))
			break;
		if (event_loop__run_pollers(loop))
			return true; /* its submissions go out on the next turn */
		if (clock__monotonic_ns() >= deadline)
			return false;
		__builtin_ia32_pause();
	}
	return true;
}

/* After a sleep of waited_ns that polling did not catch: an event just
 * past the window doubles it (up to poll_max_ns), an idle wait halves it. */
static void event_loop__adapt_polling(struct event_loop *loop, uint64_t waited_ns)
{
	if (waited_ns > loop->poll_max_ns) {
		loop->poll_ns /= 2;
		return;
	}
	loop->poll_ns = loop->poll_ns ? loop->poll_ns * 2 : 1000;
	if (loop->poll_ns > loop->poll_max_ns)
		loop->poll_ns = loop->poll_max_ns;
}

int event_loop__run(struct event_loop *loop)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen;
	int ret;

	for (;;) {
		if (event_loop__poll(loop)) {
			ret = 0;
		} else if (loop->poll_max_ns) {
			uint64_t start = clock__monotonic_ns();

			ret = io_uring_submit_and_wait(&loop->ring, 1);
			event_loop__adapt_polling(loop, clock__monotonic_ns() - start);
		} else {
			ret = io_uring_submit_and_wait(&loop->ring, 1);
		}
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		seen = 0;
		io_uring_for_each_cqe(&loop->ring, head, cqe)
		{
			struct io_uring_cqe copy = *cqe;

			/* Consume before dispatching: callbacks may submit. */
			io_uring_cq_advance(&loop->ring, 1);
			seen++;
			event_loop__complete(loop, &copy);
			if (seen >= 4096)
				break; /* let submissions through under a flood */
		}
		if (atomic_exchange(&loop->stop_requested, false))
			return 0;
	}
}

void event_loop__stop(struct event_loop *loop)
{
	uint64_t one = 1;

	atomic_store(&loop->stop_requested, true);
	if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, the loop is being woken anyway */
	}
}

int event_loop__defer(struct event_loop *loop, void (*fn)(void *opaque), void *opaque)
{
	uint64_t one = 1;
	unsigned tail;

	if (!fn)
		return -EINVAL;
	pthread_mutex_lock(&loop->deferred_lock);
	if (loop->deferred_count == loop->deferred_capacity) {
		pthread_mutex_unlock(&loop->deferred_lock);
		return -EAGAIN;
	}
	tail = (loop->deferred_head + loop->deferred_count) % loop->deferred_capacity;
	loop->deferred[tail].fn = fn;
	loop->deferred[tail].opaque = opaque;
	loop->deferred_count++;
	pthread_mutex_unlock(&loop->deferred_lock);
	if (write(loop->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}
