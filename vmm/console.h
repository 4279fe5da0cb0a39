/* console: where the guest's serial output goes. vCPU threads append
 * bytes; the bytes land in a bounded in-memory ring (the last
 * CONSOLE_RING_SIZE bytes, readable over the control socket) and, when a
 * file is configured, are written to it from the event-loop thread
 * (bounded too: bytes beyond CONSOLE_PENDING_MAX not yet written are
 * dropped and counted). */
#ifndef WARREN_VMM_CONSOLE_H
#define WARREN_VMM_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_loop;

#define CONSOLE_RING_SIZE   (64u * 1024u)
#define CONSOLE_PENDING_MAX (256u * 1024u)
/* A guest may print forever: at most this much goes to the file; the rest
 * is dropped (and counted), the ring keeps the latest bytes. */
#define CONSOLE_FILE_MAX (64ull * 1024 * 1024)

struct console {
	pthread_mutex_t lock;
	uint8_t ring[CONSOLE_RING_SIZE];
	uint64_t total; /* bytes ever written; ring holds the last min(total, size) */
	uint8_t *pending;
	size_t pending_length;
	uint64_t dropped;
	uint64_t file_bytes; /* written to the file so far */
	bool flush_scheduled;
	int fd; /* -1: ring only */
	bool owns_fd;
	struct event_loop *loop; /* NULL: write synchronously */
	uint64_t first_byte_ns;	 /* monotonic time of the first byte, 0 before */
};

/* Opens the console. path NULL: ring only; "-": standard output; else a
 * file created/truncated (append: created or appended to, as a restored
 * VM goes on with its console). Returns 0 or -errno. */
int console__init(struct console *console, const char *path, struct event_loop *loop, bool append);
void console__destroy(struct console *console);

/* Appends one byte (any thread). */
void console__put(struct console *console, uint8_t byte);

/* Copies the last min(n, available) bytes into out (malloc'd, caller frees)
 * and returns their count; *out NULL on allocation failure. */
size_t console__tail(struct console *console, size_t n, uint8_t **out);

/* Writes what is pending to the file now (any thread). */
void console__flush(struct console *console);

#endif
