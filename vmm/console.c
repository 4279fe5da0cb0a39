/* console: serial output ring + file (see console.h). */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event_loop.h"
#include "warren/clock.h"

int console__init(struct console *console, const char *path, struct event_loop *loop, bool append)
{
	memset(console, 0, sizeof(*console));
	pthread_mutex_init(&console->lock, NULL);
	console->fd = -1;
	console->loop = loop;
	if (path == NULL)
		return 0;
	console->pending = malloc(CONSOLE_PENDING_MAX);
	if (console->pending == NULL)
		return -ENOMEM;
	if (strcmp(path, "-") == 0) {
		console->fd = STDOUT_FILENO;
		return 0;
	}
	console->fd =
	    open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC | O_NOFOLLOW,
		 0640);
	if (console->fd < 0)
		return -errno;
	console->owns_fd = true;
	return 0;
}

void console__destroy(struct console *console)
{
	console__flush(console);
	if (console->owns_fd && console->fd >= 0)
		close(console->fd);
	console->fd = -1;
	free(console->pending);
	console->pending = NULL;
	pthread_mutex_destroy(&console->lock);
}

void console__flush(struct console *console)
{
	size_t done = 0;

	pthread_mutex_lock(&console->lock);
	console->flush_scheduled = false;
	while (console->fd >= 0 && done < console->pending_length) {
		ssize_t written =
		    write(console->fd, console->pending + done, console->pending_length - done);

		if (written < 0 && errno == EINTR)
			continue;
		if (written <= 0) {
			console->dropped += console->pending_length - done;
			break;
		}
		done += (size_t)written;
		console->file_bytes += (uint64_t)written;
	}
	console->pending_length = 0;
	pthread_mutex_unlock(&console->lock);
}

static void console__flush_deferred(void *opaque)
{
	console__flush(opaque);
}

void console__put(struct console *console, uint8_t byte)
{
	bool schedule = false;

	pthread_mutex_lock(&console->lock);
	if (console->total == 0)
		console->first_byte_ns = clock__monotonic_ns();
	console->ring[console->total % CONSOLE_RING_SIZE] = byte;
	console->total++;
	if (console->fd >= 0) {
		if (console->pending_length < CONSOLE_PENDING_MAX &&
		    console->file_bytes + console->pending_length < CONSOLE_FILE_MAX)
			console->pending[console->pending_length++] = byte;
		else
			console->dropped++;
		if (!console->flush_scheduled && console->loop != NULL) {
			console->flush_scheduled = true;
			schedule = true;
		}
	}
	pthread_mutex_unlock(&console->lock);
	if (schedule && event_loop__defer(console->loop, console__flush_deferred, console) != 0) {
		pthread_mutex_lock(&console->lock);
		console->flush_scheduled = false; /* retried with the next byte */
		pthread_mutex_unlock(&console->lock);
	}
	if (console->loop == NULL && byte == '\n')
		console__flush(console);
}

size_t console__tail(struct console *console, size_t n, uint8_t **out)
{
	size_t available, start;

	pthread_mutex_lock(&console->lock);
	available = console->total < CONSOLE_RING_SIZE ? (size_t)console->total : CONSOLE_RING_SIZE;
	if (n > available)
		n = available;
	*out = malloc(n + 1);
	if (*out == NULL) {
		pthread_mutex_unlock(&console->lock);
		return 0;
	}
	start = (size_t)((console->total - n) % CONSOLE_RING_SIZE);
	for (size_t i = 0; i < n; i++)
		(*out)[i] = console->ring[(start + i) % CONSOLE_RING_SIZE];
	(*out)[n] = 0;
	pthread_mutex_unlock(&console->lock);
	return n;
}
