/* Tap helpers shared by the virtio-net tests (test_net.c, test_virtio_guest.c);
 * both run inside a network namespace of their own. */
#ifndef WARREN_TEST_TAP_SUPPORT_H
#define WARREN_TEST_TAP_SUPPORT_H

#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sets IFF_UP on interface `name`: 0, or -1 (errno from socket/ioctl). */
static inline int test_tap__interface_up(const char *name)
{
	struct ifreq request;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = -1;

	memset(&request, 0, sizeof(request));
	snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", name);
	if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
		request.ifr_flags |= IFF_UP;
		ret = ioctl(fd, SIOCSIFFLAGS, &request);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

#endif
