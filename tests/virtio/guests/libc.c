/* memset/memcpy for the freestanding guests (the compiler may emit calls). */
#include <stddef.h>

void *memset(void *destination, int value, size_t length)
{
	unsigned char *d = destination;

	while (length--)
		*d++ = (unsigned char)value;
	return destination;
}

void *memcpy(void *destination, const void *source, size_t length)
{
	unsigned char *d = destination;
	const unsigned char *s = source;

	while (length--)
		*d++ = *s++;
	return destination;
}
