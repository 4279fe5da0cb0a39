/* notify: a connection that LISTENs on a channel (PostgreSQL's
 * LISTEN/NOTIFY, https://www.postgresql.org/docs/current/libpq-notify.html).
 * The API listens on warren_results for the outcomes the workers record
 * with storage__request_finish_notify (docs/schema.md, "Notifications"). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct storage_listener {
	PGconn *conn;
};

struct storage_listener *storage__listener_open(const struct storage_settings *settings,
						const char *channel, struct storage_error *err)
{
	struct storage_listener *listener = calloc(1, sizeof(*listener));
	char *identifier = NULL, sql[128];
	PGresult *result = NULL;

	if (!listener) {
		storage__fail(err, STORAGE_ERR_UNAVAILABLE, "out of memory");
		return NULL;
	}
	listener->conn = storage__connect_with(settings, "5");
	if (PQstatus(listener->conn) != CONNECTION_OK) {
		storage__fail(err, STORAGE_ERR_UNAVAILABLE, "cannot connect to PostgreSQL: %s",
			      PQerrorMessage(listener->conn));
		goto out;
	}
	identifier = PQescapeIdentifier(listener->conn, channel, strlen(channel));
	if (!identifier ||
	    snprintf(sql, sizeof(sql), "LISTEN %s", identifier) >= (int)sizeof(sql)) {
		storage__fail(err, STORAGE_ERR_INVALID, "bad channel name");
		goto out;
	}
	result = PQexec(listener->conn, sql);
	if (PQresultStatus(result) != PGRES_COMMAND_OK) {
		storage__fail_result(err, result, listener->conn);
		goto out;
	}
	PQclear(result);
	PQfreemem(identifier);
	/* Reads in storage__listener_drain never wait. */
	PQsetnonblocking(listener->conn, 1);
	storage__ok(err);
	return listener;
out:
	PQclear(result);
	PQfreemem(identifier);
	storage__listener_close(listener);
	return NULL;
}

int storage__listener_fd(const struct storage_listener *listener)
{
	return PQsocket(listener->conn);
}

int storage__listener_drain(struct storage_listener *listener, storage_notify_fn fn, void *opaque)
{
	PGnotify *notification;
	int count = 0;

	if (!PQconsumeInput(listener->conn) || PQstatus(listener->conn) != CONNECTION_OK)
		return -1;
	while ((notification = PQnotifies(listener->conn))) {
		fn(notification->extra, opaque);
		PQfreemem(notification);
		count++;
	}
	return count;
}

void storage__listener_close(struct storage_listener *listener)
{
	if (!listener)
		return;
	PQfinish(listener->conn);
	free(listener);
}
