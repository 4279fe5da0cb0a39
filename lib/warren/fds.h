/* fds: descriptor numbers kept out of select()'s reach. */
#ifndef WARREN_FDS_H
#define WARREN_FDS_H

/* Moves fd, a descriptor kept for a sandbox's life, to a number at or
 * above FD_SETSIZE (1024), close-on-exec, and returns the new number; the
 * old one is closed. Libraries that still wait with select() (libnftables
 * does) abort on a descriptor of 1024 or more, so per-sandbox descriptors
 * must leave the low numbers to them. Where the limit on open files is too
 * low for that, fd is returned unchanged. */
int fds__keep_high(int fd);

#endif
