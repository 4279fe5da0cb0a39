/* files: envd's GET/POST /files (envd OpenAPI "/files"): download a file,
 * upload one as application/octet-stream or several as multipart/form-data
 * (part name "file", filename = path when ?path= is absent), creating
 * parent directories; 507 on ENOSPC/EDQUOT. Bodies stream to disk. The
 * optional v1 signature (docs/e2b-compatibility.md "Signed URL") replaces the token. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "agent_paths.h"
#include "warren/log.h"
#include "warren/tokens.h"

#define UPLOAD_POST_BUFFER (64 * 1024)
#define GZIP_READ_SIZE	   (64 * 1024)

static const char *query(struct MHD_Connection *connection, const char *name)
{
	return MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, name);
}

unsigned int files__check_signature(struct MHD_Connection *connection, const char *operation,
				    char *message, size_t message_len)
{
	const char *signature = query(connection, "signature");
	const char *path = query(connection, "path");
	const char *username = query(connection, "username");
	const char *expiration_text = query(connection, "signature_expiration");
	char token[AGENT_MAX_TOKEN], expected[128], *end;
	long long expiration = -1;

	if (!agent__current_token(token, sizeof(token))) {
		if (agent.token_hash.algorithm == TOKEN_HASH_NONE)
			return 0; /* secure=false and no token: nothing to sign with */
		snprintf(message, message_len,
			 "sandbox is not initialised, signatures are invalid");
		return MHD_HTTP_UNAUTHORIZED;
	}
	if (expiration_text && *expiration_text) {
		errno = 0;
		expiration = strtoll(expiration_text, &end, 10);
		if (errno || *end || expiration < 0) {
			snprintf(message, message_len, "invalid signature_expiration");
			return MHD_HTTP_BAD_REQUEST;
		}
		if (expiration < (long long)time(NULL)) {
			snprintf(message, message_len, "signature is already expired");
			return MHD_HTTP_UNAUTHORIZED;
		}
	}
	tokens__file_signature(path ? path : "", operation, username ? username : "", token,
			       expiration, expected, sizeof(expected));
	if (!signature || !tokens__equal(signature, expected)) {
		snprintf(message, message_len, "invalid signature");
		return MHD_HTTP_UNAUTHORIZED;
	}
	return 0;
}

static unsigned int status_for_errno(int error)
{
	switch (error) {
	case ENOENT:
	case ENOTDIR:
		return MHD_HTTP_NOT_FOUND;
	case EACCES:
	case EPERM:
	case EROFS:
		return MHD_HTTP_FORBIDDEN;
	case EISDIR:
	case ENAMETOOLONG:
	case ELOOP:
		return MHD_HTTP_BAD_REQUEST;
	case ENOSPC:
	case EDQUOT:
		return MHD_HTTP_INSUFFICIENT_STORAGE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* A download sent gzip-encoded: the file read and deflated as the
 * response goes out (level 1: the sandbox's CPU is the tenant's). */
struct gzip_download {
	int fd;
	z_stream zs;
	bool input_done, finished;
	uint8_t in[GZIP_READ_SIZE];
};

/* libmicrohttpd's content reader: the next deflated bytes into buf. */
static ssize_t gzip_download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct gzip_download *download = cls;
	ssize_t n;
	int status;

	(void)pos;
	if (download->finished)
		return MHD_CONTENT_READER_END_OF_STREAM;
	download->zs.next_out = (Bytef *)buf;
	download->zs.avail_out = (uInt)max;
	while (download->zs.avail_out == max && !download->finished) {
		if (download->zs.avail_in == 0 && !download->input_done) {
			n = read(download->fd, download->in, sizeof(download->in));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			download->input_done = n == 0;
			download->zs.next_in = download->in;
			download->zs.avail_in = (uInt)n;
		}
		status = deflate(&download->zs, download->input_done ? Z_FINISH : Z_NO_FLUSH);
		if (status == Z_STREAM_END)
			download->finished = true;
		else if (status != Z_OK && status != Z_BUF_ERROR)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	return (ssize_t)(max - download->zs.avail_out);
}

static void gzip_download_free(void *cls)
{
	struct gzip_download *download = cls;

	deflateEnd(&download->zs);
	close(download->fd);
	free(download);
}

/* A response deflating fd (taken: closed with the response, or now on failure). */
static struct MHD_Response *gzip_download_response(int fd)
{
	struct gzip_download *download = calloc(1, sizeof(*download));
	struct MHD_Response *response;

	/* 16 + MAX_WBITS: a gzip header and trailer. */
	if (!download || deflateInit2(&download->zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8,
				      Z_DEFAULT_STRATEGY) != Z_OK) {
		free(download);
		close(fd);
		return NULL;
	}
	download->fd = fd;
	response = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, GZIP_READ_SIZE, gzip_download_read, download, gzip_download_free);
	if (!response) {
		gzip_download_free(download);
		return NULL;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
	return response;
}

enum MHD_Result files__download(struct MHD_Connection *connection, const struct request *request)
{
	const char *raw_path = query(connection, "path");
	struct agent_user user;
	struct fs_identity saved;
	struct MHD_Response *response;
	char path[PATH_MAX], disposition[PATH_MAX + 64];
	struct stat st;
	enum MHD_Result ret;
	size_t i;
	int fd, error;
	bool gzip;

	if (!raw_path || !*raw_path)
		return agent__error_response(connection, MHD_HTTP_BAD_REQUEST, "path is required");
	if (!users__for_request(connection, query(connection, "username"), request->signed_url,
				&user))
		return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
					     "user '%s' does not exist", user.name);
	if (!paths__resolve(raw_path, user.home, path, sizeof(path)))
		return agent__error_response(connection, MHD_HTTP_BAD_REQUEST, "invalid path");
	users__fs_enter(&user, &saved);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	error = errno;
	users__fs_leave(&saved);
	if (fd < 0) {
		if (error == ENOENT || error == ENOTDIR)
			return agent__error_response(connection, MHD_HTTP_NOT_FOUND,
						     "path '%s' does not exist", path);
		return agent__error_response(connection, status_for_errno(error),
					     "error opening file '%s': %s", path, strerror(error));
	}
	memset(&st, 0, sizeof(st));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		if (S_ISDIR(st.st_mode))
			return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
						     "path '%s' is a directory", path);
		return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
					     "path '%s' is not a regular file", path);
	}
	gzip = wire__accepts_gzip(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
							      MHD_HTTP_HEADER_ACCEPT_ENCODING));
	if (gzip) {
		response = gzip_download_response(fd); /* owns fd */
		if (!response)
			return MHD_NO;
	} else {
		response = MHD_create_response_from_fd64((uint64_t)st.st_size, fd); /* owns fd */
		if (!response) {
			close(fd);
			return MHD_NO;
		}
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
	snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s\"",
		 paths__basename(path));
	for (i = strlen("attachment; filename=\""); disposition[i + 1]; i++)
		if (disposition[i] == '"' || disposition[i] == '\\')
			disposition[i] = '_';
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
	ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	return ret;
}

/* mkdir -p of the directories above path (absolute, cleaned). */
static int make_parents(const char *path)
{
	char buf[PATH_MAX];
	size_t i, len = strlen(path);

	if (len >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (i = 1; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			int error = errno;
			buf[i] = '/';
			return error;
		}
		buf[i] = '/';
	}
	return 0;
}

static void close_current(struct request *request)
{
	if (request->fd >= 0) {
		if (close(request->fd) < 0 && (errno == ENOSPC || errno == EDQUOT))
			request__fail(request, MHD_HTTP_INSUFFICIENT_STORAGE,
				      "not enough disk space to write '%s'", request->current_file);
		request->fd = -1;
	}
}

static void fail_errno(struct request *request, int error, const char *what, const char *path)
{
	if (error == ENOSPC || error == EDQUOT)
		request__fail(request, MHD_HTTP_INSUFFICIENT_STORAGE,
			      "not enough disk space to write '%s'", path);
	else if (error == EISDIR)
		request__fail(request, MHD_HTTP_BAD_REQUEST, "path '%s' is a directory", path);
	else
		request__fail(request, status_for_errno(error), "error %s '%s': %s", what, path,
			      strerror(error));
}

static bool open_target(struct request *request, const char *path)
{
	struct fs_identity saved;
	int error = 0;

	close_current(request);
	if (request->error_status)
		return false;
	users__fs_enter(&request->user, &saved);
	error = make_parents(path);
	if (!error) {
		request->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
		if (request->fd < 0)
			error = errno;
	}
	users__fs_leave(&saved);
	if (error) {
		fail_errno(request, error, "creating", path);
		return false;
	}
	snprintf(request->current_file, sizeof(request->current_file), "%s", path);
	json_array_append_new(request->written,
			      json_pack("{s:s,s:s,s:s}", "name", paths__basename(path), "type",
					"file", "path", path));
	return true;
}

static void write_all(struct request *request, const char *data, size_t size)
{
	ssize_t n;

	while (size > 0 && request->fd >= 0) {
		n = write(request->fd, data, size);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail_errno(request, errno, "writing", request->current_file);
			close(request->fd);
			request->fd = -1;
			return;
		}
		data += n;
		size -= (size_t)n;
	}
}

static enum MHD_Result form_iterator(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *filename, const char *content_type,
				     const char *transfer_encoding, const char *data, uint64_t off,
				     size_t size)
{
	struct request *request = cls;
	char path[PATH_MAX];

	if (request->error_status || !key || strcmp(key, "file") != 0)
		return MHD_YES;
	if (off == 0) {
		if (request->path[0]) {
			snprintf(path, sizeof(path), "%s", request->path);
		} else if (!filename ||
			   !paths__resolve(filename, request->user.home, path, sizeof(path))) {
			request__fail(request, MHD_HTTP_BAD_REQUEST,
				      "multipart part without a valid filename and no ?path=");
			return MHD_YES;
		}
		/* A part may arrive as several calls at offset 0 only while empty. */
		if (request->fd < 0 || strcmp(path, request->current_file) != 0 ||
		    json_array_size(request->written) == 0)
			if (!open_target(request, path))
				return MHD_YES;
	}
	if (size)
		write_all(request, data, size);
	return MHD_YES;
}

void files__begin_upload(struct MHD_Connection *connection, struct request *request)
{
	const char *raw_path = query(connection, "path");
	const char *content_type =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *encoding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
							   MHD_HTTP_HEADER_CONTENT_ENCODING);

	request->kind = REQUEST_DRAIN;
	request->written = json_array();
	if (!users__for_request(connection, query(connection, "username"), request->signed_url,
				&request->user)) {
		request__fail(request, MHD_HTTP_BAD_REQUEST, "user '%s' does not exist",
			      request->user.name);
		return;
	}
	if (raw_path && *raw_path &&
	    !paths__resolve(raw_path, request->user.home, request->path, sizeof(request->path))) {
		request__fail(request, MHD_HTTP_BAD_REQUEST, "invalid path");
		return;
	}
	if (encoding && strcasecmp(encoding, "gzip") == 0) {
		request->gunzip = gunzip__new(agent.gunzip_limit);
		if (!request->gunzip) {
			request__fail(request, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
			return;
		}
	} else if (encoding && strcasecmp(encoding, "identity") != 0) {
		request__fail(request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			      "Content-Encoding %.32s is not supported (gzip or identity)",
			      encoding);
		return;
	}
	if (wire__content_type_is(content_type, "application/octet-stream")) {
		if (!request->path[0]) {
			request__fail(request, MHD_HTTP_BAD_REQUEST,
				      "path is required for application/octet-stream uploads");
			return;
		}
		if (open_target(request, request->path))
			request->kind = REQUEST_UPLOAD_RAW;
		return;
	}
	if (wire__content_type_is(content_type, "multipart/form-data")) {
		request->post = MHD_create_post_processor(connection, UPLOAD_POST_BUFFER,
							  form_iterator, request);
		if (!request->post) {
			request__fail(request, MHD_HTTP_BAD_REQUEST, "malformed multipart header");
			return;
		}
		request->kind = REQUEST_UPLOAD_FORM;
		return;
	}
	request__fail(request, MHD_HTTP_BAD_REQUEST,
		      "Content-Type must be multipart/form-data or application/octet-stream");
}

/* gunzip_sink of a gzip upload: the decoded bytes go where plain ones go. */
static bool upload_decoded(void *context, const uint8_t *data, size_t size)
{
	struct request *request = context;

	files__upload_plain(request, (const char *)data, size);
	return !request->error_status;
}

/* The answer for a gzip upload that failed to decode (413 for a bomb). */
static void fail_gunzip(struct request *request, enum gunzip_result result)
{
	if (result == GUNZIP_SINK)
		return; /* the write's own error stands */
	if (result == GUNZIP_TOO_LARGE)
		request__fail(request, MHD_HTTP_CONTENT_TOO_LARGE,
			      "gzip body decodes to more than %llu bytes", agent.gunzip_limit);
	else
		request__fail(request, MHD_HTTP_BAD_REQUEST, "Content-Encoding gzip: %s",
			      gunzip__strerror(result));
}

void files__upload_data(struct request *request, const char *data, size_t size)
{
	enum gunzip_result result;

	if (request->error_status || !request->gunzip) {
		files__upload_plain(request, data, size);
		return;
	}
	result =
	    gunzip__feed(request->gunzip, (const uint8_t *)data, size, upload_decoded, request);
	if (result != GUNZIP_OK)
		fail_gunzip(request, result);
}

void files__upload_plain(struct request *request, const char *data, size_t size)
{
	if (request->error_status)
		return;
	if (request->kind == REQUEST_UPLOAD_RAW) {
		write_all(request, data, size);
		return;
	}
	if (MHD_post_process(request->post, data, size) != MHD_YES)
		request__fail(request, MHD_HTTP_BAD_REQUEST, "malformed multipart body");
}

enum MHD_Result files__finish_upload(struct MHD_Connection *connection, struct request *request)
{
	json_t *written;
	enum gunzip_result result;

	if (request->gunzip && !request->error_status &&
	    (result = gunzip__finish(request->gunzip)) != GUNZIP_OK)
		fail_gunzip(request, result);
	if (request->post) {
		if (MHD_destroy_post_processor(request->post) != MHD_YES)
			request__fail(request, MHD_HTTP_BAD_REQUEST, "truncated multipart body");
		request->post = NULL;
	}
	close_current(request);
	if (request->error_status) {
		log_info("upload failed: %u %s", request->error_status, request->error_message);
		return agent__error_response(connection, request->error_status, "%s",
					     request->error_message);
	}
	if (json_array_size(request->written) == 0)
		return agent__error_response(connection, MHD_HTTP_BAD_REQUEST,
					     "no file part named 'file' in the body");
	written = request->written;
	request->written = NULL;
	return agent__json_response(connection, MHD_HTTP_OK, written);
}
