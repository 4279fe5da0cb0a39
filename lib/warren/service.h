/* service: telling the service manager how a daemon is doing, the
 * sd_notify(3) protocol spoken directly (one datagram to $NOTIFY_SOCKET;
 * no libsystemd): READY=1 once the daemon serves, STOPPING=1 when it
 * starts draining. Without NOTIFY_SOCKET (not under systemd, or
 * Type=exec) it does nothing. */
#ifndef WARREN_SERVICE_H
#define WARREN_SERVICE_H

/* Sends state ("READY=1", "STOPPING=1", "STATUS=...", lines separated by
 * '\n') to the socket NOTIFY_SOCKET names (a path, or '@' for the abstract
 * namespace). 0 when sent or when there is no socket, else -errno. */
int service__notify(const char *state);

#endif
