/* iov: see iov.h. */
#include "iov.h"

#include <string.h>

bool iov__read_front(const struct iovec *iov, unsigned count, uint8_t *out, size_t bytes)
{
	for (unsigned i = 0; i < count && bytes; i++) {
		size_t n = iov[i].iov_len < bytes ? iov[i].iov_len : bytes;

		memcpy(out, iov[i].iov_base, n);
		out += n;
		bytes -= n;
	}
	return bytes == 0;
}

size_t iov__write_front(const struct iovec *iov, unsigned count, const uint8_t *in, size_t bytes)
{
	size_t written = 0;

	for (unsigned i = 0; i < count && written < bytes; i++) {
		size_t n = iov[i].iov_len < bytes - written ? iov[i].iov_len : bytes - written;

		memcpy(iov[i].iov_base, in + written, n);
		written += n;
	}
	return written;
}

void iov__write_at(const struct iovec *iov, unsigned count, uint64_t offset, const uint8_t *data,
		   size_t bytes)
{
	for (unsigned i = 0; i < count && bytes; i++) {
		size_t n;

		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - offset < bytes ? iov[i].iov_len - offset : bytes;
		memcpy((uint8_t *)iov[i].iov_base + offset, data, n);
		data += n;
		bytes -= n;
		offset = 0;
	}
}

unsigned iov__skip_front(struct iovec *iov, unsigned count, uint64_t bytes)
{
	unsigned i = 0;

	while (i < count && bytes) {
		if (iov[i].iov_len <= bytes) {
			bytes -= iov[i].iov_len;
			iov[i].iov_len = 0;
			i++;
		} else {
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + bytes;
			iov[i].iov_len -= bytes;
			bytes = 0;
		}
	}
	while (i < count && iov[i].iov_len == 0)
		i++;
	return i;
}
