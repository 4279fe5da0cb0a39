/* forward: makes servers that listen only on the sandbox's loopback
 * (127.0.0.0/8, ::1) reachable at the sandbox's own address, as envd
 * does: about once a second (every ten once the sandbox is idle) the
 * agent lists its namespace's TCP listeners; for a port
 * with a loopback listener and no other listener, it listens on the
 * same port at each non-loopback IPv4 address of its network namespace
 * and relays each connection to the loopback listener. When the
 * loopback listener goes away the port's forward stops (relayed
 * connections finish on their own). One event-loop thread. */
#ifndef WARREN_AGENT_FORWARD_H
#define WARREN_AGENT_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#define FORWARD_SCAN_MS		1000
#define FORWARD_IDLE_SCAN_MS	10000	    /* no process of ours runs, none started lately */
#define FORWARD_ACTIVE_MS	60000	    /* the fast scan after a start */
#define FORWARD_MAX_PORTS	256	    /* forwarded ports at once */
#define FORWARD_MAX_CONNECTIONS 1024	    /* relayed connections at once */
#define FORWARD_MAX_ADDRESSES	8	    /* addresses listened on per port */
#define FORWARD_RELAY_BUFFER	(16 * 1024) /* per direction of a connection */

/* Starts the forwarder thread; agent_port (the agent's own) is never
 * forwarded; active_ms replaces FORWARD_ACTIVE_MS. False when the thread
 * or its epoll can't be made. */
bool forward__start(uint16_t agent_port, long active_ms);

/* A process was started through the agent, or /init came: scan every
 * FORWARD_SCAN_MS for the next FORWARD_ACTIVE_MS (and while process__running_count() is not
 * 0), the next scan within a second even from the idle interval. Any
 * thread; only the interval before forward__start. */
void forward__activity(void);

#endif
