/* iov: copies between flat buffers and a chain's iovec array (device
 * headers, status and config bytes that the guest may split over several
 * descriptors). Bounds come from the array: nothing is read or written
 * past the iov_len of any element. */
#ifndef WARREN_VMM_VIRTIO_IOV_H
#define WARREN_VMM_VIRTIO_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Copies the first `bytes` of iov[0..count) into out; false when the array
 * holds fewer (out then holds what there was). */
bool iov__read_front(const struct iovec *iov, unsigned count, uint8_t *out, size_t bytes);
/* Copies up to `bytes` of in to the front of iov[0..count); returns how
 * many fitted. */
size_t iov__write_front(const struct iovec *iov, unsigned count, const uint8_t *in, size_t bytes);
/* Writes `bytes` of data at byte `offset` of iov[0..count) (as much as fits). */
void iov__write_at(const struct iovec *iov, unsigned count, uint64_t offset, const uint8_t *data,
		   size_t bytes);
/* Drops `bytes` from the front of iov[0..count) in place; returns the first
 * index still holding data (its base advanced). */
unsigned iov__skip_front(struct iovec *iov, unsigned count, uint64_t bytes);

#endif
