/* control: JSON-lines control socket (see control.h, docs/vmm-api.md). */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "event_loop.h"
#include "warren/log.h"

struct control_client {
	struct control *control;
	int fd;
	int64_t watch;
	size_t length;
	char buffer[CONTROL_MAX_LINE];
};

static char *control__reply(json_t *object)
{
	char *text = json_dumps(object, JSON_COMPACT);

	json_decref(object);
	return text;
}

static char *control__error(const char *message)
{
	return control__reply(json_pack("{s:b, s:s}", "ok", 0, "error", message));
}

static char *control__ok(json_t *object)
{
	if (object == NULL)
		object = json_object();
	json_object_set_new(object, "ok", json_true());
	return control__reply(object);
}

/* "snapshot" {path}: saves the paused VM; "restore" {path}: builds the
 * configured VM from a snapshot and runs it (instead of "start"). */
static char *control__snapshot_op(struct control *control, const json_t *request, bool restore)
{
	const json_t *value = json_object_get(request, "path");
	const char *path = json_string_value(value);
	char error[320] = "";
	json_t *info = NULL;

	if (path == NULL || path[0] == 0 || json_string_length(value) >= 4096 ||
	    strlen(path) != json_string_length(value))
		return control__error("\"path\" must be a non-empty string without NUL");
	if (!restore) {
		if (vm__snapshot(control->vm, path, &info, error, sizeof(error)) != 0)
			return control__error(error[0] ? error : "snapshot failed");
		return control__ok(info);
	}
	if (vm__prepare_restore(control->vm, path, error, sizeof(error)) != 0 ||
	    vm__start(control->vm, error, sizeof(error)) != 0)
		return control__error(error[0] ? error : "restore failed");
	if (control->on_started)
		control->on_started(control);
	return control__ok(NULL);
}

char *control__handle_line(struct control *control, const char *line, size_t length)
{
	struct vm *vm = control->vm;
	json_error_t parse_error;
	json_t *request = json_loadb(line, length, JSON_REJECT_DUPLICATES, &parse_error);
	const char *op;
	char error[256] = "";
	char *response;

	if (request == NULL || !json_is_object(request)) {
		json_decref(request);
		return control__error("request must be one JSON object per line");
	}
	op = json_string_value(json_object_get(request, "op"));
	if (op == NULL) {
		response = control__error("\"op\" (string) is required");
	} else if (strcmp(op, "configure") == 0) {
		struct vm_config config;
		const json_t *object = json_object_get(request, "config");

		if (vm_config__from_json(&config, object, error, sizeof(error)) != 0) {
			response = control__error(error);
		} else if (vm__configure(vm, &config) != 0) {
			vm_config__free(&config);
			response = control__error("VM already started");
		} else {
			response = control__ok(NULL);
		}
	} else if (strcmp(op, "start") == 0) {
		if (vm__start(vm, error, sizeof(error)) != 0) {
			response = control__error(error[0] ? error : "start failed");
		} else {
			response = control__ok(NULL);
			if (control->on_started)
				control->on_started(control);
		}
	} else if (strcmp(op, "pause") == 0) {
		response = vm__pause(vm) ? control__error("VM is not running") : control__ok(NULL);
	} else if (strcmp(op, "resume") == 0) {
		response = vm__resume(vm) ? control__error("VM is not paused") : control__ok(NULL);
	} else if (strcmp(op, "stop") == 0) {
		enum vm_state state = atomic_load(&vm->state);

		if (state != VM_STATE_RUNNING && state != VM_STATE_PAUSED) {
			response = control__error("VM is not running");
		} else {
			vm__request_stop(vm, VM_EXIT_STOPPED, 0,
					 "stop requested on the control socket");
			response = control__ok(NULL);
		}
	} else if (strcmp(op, "state") == 0) {
		response = control__ok(vm__state_json(vm));
	} else if (strcmp(op, "metrics") == 0) {
		response = control__ok(vm__metrics_json(vm));
	} else if (strcmp(op, "console") == 0) {
		const json_t *bytes = json_object_get(request, "bytes");
		json_int_t wanted = bytes ? json_integer_value(bytes) : 4096;
		uint8_t *tail = NULL;
		size_t count = 0;

		if ((bytes && !json_is_integer(bytes)) || wanted < 0) {
			response = control__error("\"bytes\" must be a non-negative integer");
		} else if (!vm->console_ready) {
			response = control__ok(json_pack("{s:s}", "data", ""));
		} else {
			count = console__tail(&vm->console, (size_t)wanted, &tail);
			if (tail == NULL) {
				response = control__error("out of memory");
			} else {
				/* bytes from the guest: not necessarily UTF-8 */
				for (size_t i = 0; i < count; i++)
					if (tail[i] >= 0x80 || (tail[i] < 0x20 && tail[i] != '\n' &&
								tail[i] != '\t' && tail[i] != '\r'))
						tail[i] = '?';
				response =
				    control__ok(json_pack("{s:s%}", "data", (char *)tail, count));
				free(tail);
			}
		}
	} else if (strcmp(op, "registers") == 0) {
		json_t *registers = vm__registers_json(vm);

		response = registers ? control__ok(json_pack("{s:o}", "vcpus", registers))
				     : control__error("VM is not paused");
	} else if (strcmp(op, "rate_limit") == 0) {
		const json_t *index = json_object_get(request, "device");
		json_int_t device = json_is_integer(index) ? json_integer_value(index) : -1;

		if (device < 0 || (uint64_t)device >= vm->device_count) {
			response =
			    control__error("\"device\" must be the index of a configured device");
		} else if (vm->devices[device].set_rate_limit == NULL) {
			response = control__error("this device has no rate limiter");
		} else {
			if (vm->devices[device].set_rate_limit(vm->devices[device].opaque,
							       json_object_get(request, "config"),
							       error, sizeof(error)) != 0)
				response = control__error(error[0] ? error : "bad rate limiter");
			else
				response = control__ok(NULL);
		}
	} else if (strcmp(op, "snapshot") == 0 || strcmp(op, "restore") == 0) {
		response = control__snapshot_op(control, request, strcmp(op, "restore") == 0);
	} else if (strcmp(op, "exit") == 0) {
		control->exit_requested = true;
		response = control__ok(vm__state_json(vm));
	} else {
		snprintf(error, sizeof(error), "unknown op \"%.64s\"", op);
		response = control__error(error);
	}
	json_decref(request);
	return response;
}

static void control__drop_client(struct control_client *client)
{
	struct control *control = client->control;

	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (control->clients[i] == client)
			control->clients[i] = NULL;
	close(client->fd);
	free(client);
}

static bool control__send(struct control_client *client, const char *text)
{
	size_t length = strlen(text), done = 0;

	while (done < length + 1) {
		const char *part = done < length ? text + done : "\n";
		size_t part_length = done < length ? length - done : 1;
		ssize_t sent = send(client->fd, part, part_length, MSG_NOSIGNAL);

		if (sent < 0 && errno == EINTR)
			continue;
		if (sent <= 0)
			return false;
		done += (size_t)sent;
	}
	return true;
}

static bool control__client_readable(void *opaque, int32_t result)
{
	struct control_client *client = opaque;
	struct control *control = client->control;
	ssize_t got;
	char *newline;

	if (result < 0) {
		control__drop_client(client);
		return false;
	}
	got = recv(client->fd, client->buffer + client->length,
		   sizeof(client->buffer) - client->length, MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (got <= 0) {
		control__drop_client(client);
		return false;
	}
	client->length += (size_t)got;
	while ((newline = memchr(client->buffer, '\n', client->length)) != NULL) {
		size_t line_length = (size_t)(newline - client->buffer);
		char *response = control__handle_line(control, client->buffer, line_length);
		bool sent = response && control__send(client, response);

		free(response);
		memmove(client->buffer, newline + 1, client->length - line_length - 1);
		client->length -= line_length + 1;
		if (!sent) {
			control__drop_client(client);
			return false;
		}
		if (control->exit_requested && control->on_exit) {
			control->on_exit(control);
			return true;
		}
	}
	if (client->length == sizeof(client->buffer)) {
		char *response = control__error("request line too long");

		if (response)
			control__send(client, response);
		free(response);
		control__drop_client(client);
		return false;
	}
	return true;
}

static bool control__listener_readable(void *opaque, int32_t result)
{
	struct control *control = opaque;
	struct control_client *client;
	struct timeval timeout = {.tv_sec = 1};
	int fd, slot = -1;

	if (result < 0)
		return false;
	fd = accept4(control->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return true;
	for (int i = 0; i < CONTROL_MAX_CLIENTS && slot < 0; i++)
		if (control->clients[i] == NULL)
			slot = i;
	client = slot >= 0 ? calloc(1, sizeof(*client)) : NULL;
	if (client == NULL) {
		close(fd);
		return true;
	}
	/* a client that does not read its responses cannot stall the loop long */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	client->control = control;
	client->fd = fd;
	client->watch =
	    event_loop__watch(control->loop, fd, POLLIN, control__client_readable, client);
	if (client->watch < 0) {
		close(fd);
		free(client);
		return true;
	}
	control->clients[slot] = client;
	return true;
}

int control__open(struct control *control, struct vm *vm, struct event_loop *loop, const char *path)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	int64_t watch;
	int result;

	memset(control, 0, sizeof(*control));
	control->vm = vm;
	control->loop = loop;
	control->listen_fd = -1;
	if (strlen(path) >= sizeof(address.sun_path))
		return -ENAMETOOLONG;
	snprintf(control->path, sizeof(control->path), "%s", path);
	memcpy(address.sun_path, path, strlen(path) + 1);
	control->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (control->listen_fd < 0)
		return -errno;
	unlink(path);
	if (bind(control->listen_fd, (struct sockaddr *)&address, sizeof(address)) < 0 ||
	    chmod(path, 0600) < 0 || listen(control->listen_fd, 8) < 0) {
		result = -errno;
		goto err;
	}
	watch = event_loop__watch(loop, control->listen_fd, POLLIN, control__listener_readable,
				  control);
	if (watch < 0) {
		result = (int)watch;
		goto err;
	}
	return 0;
err:
	close(control->listen_fd);
	control->listen_fd = -1;
	return result;
}

void control__close(struct control *control)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (control->clients[i]) {
			close(control->clients[i]->fd);
			free(control->clients[i]);
			control->clients[i] = NULL;
		}
	}
	if (control->listen_fd >= 0) {
		close(control->listen_fd);
		unlink(control->path);
	}
	control->listen_fd = -1;
}
