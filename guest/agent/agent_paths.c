/* paths: lexical path resolution, see agent_paths.h (like Go's filepath.Clean,
 * which envd applies to every path it receives). */
#include "agent_paths.h"

#include <string.h>

bool paths__resolve(const char *input, const char *home, char *out, size_t out_len)
{
	char joined[8192];
	size_t in_len, home_len, o = 0, i;
	const char *rest = input;

	if (!input || !*input || out_len < 2)
		return false;
	in_len = strlen(input);
	for (i = 0; i < in_len; i++)
		if ((unsigned char)input[i] < 0x20 || input[i] == 0x7f)
			return false;
	if (!home || home[0] != '/')
		home = "/";
	home_len = strlen(home);
	if (input[0] == '~' && (input[1] == '\0' || input[1] == '/'))
		rest = input + 1;
	if (input[0] == '/') {
		if (in_len >= sizeof(joined))
			return false;
		memcpy(joined, input, in_len + 1);
	} else {
		if (home_len + 1 + strlen(rest) >= sizeof(joined))
			return false;
		memcpy(joined, home, home_len);
		joined[home_len] = '/';
		memcpy(joined + home_len + 1, rest, strlen(rest) + 1);
	}

	/* Clean component by component into out. */
	out[o++] = '/';
	i = 0;
	while (joined[i]) {
		size_t start, len;

		while (joined[i] == '/')
			i++;
		start = i;
		while (joined[i] && joined[i] != '/')
			i++;
		len = i - start;
		if (len == 0 || (len == 1 && joined[start] == '.'))
			continue;
		if (len == 2 && joined[start] == '.' && joined[start + 1] == '.') {
			/* Drop the last component of out, never above "/". */
			while (o > 1 && out[o - 1] != '/')
				o--;
			if (o > 1)
				o--;
			continue;
		}
		if (o > 1) {
			if (o + 1 >= out_len)
				return false;
			out[o++] = '/';
		}
		if (o + len >= out_len)
			return false;
		memcpy(out + o, joined + start, len);
		o += len;
	}
	out[o] = '\0';
	return true;
}

const char *paths__basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash || slash[1] == '\0')
		return path;
	return slash + 1;
}
