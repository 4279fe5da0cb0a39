/* agent_version: the envd-compatible version warren-agent reports.
 * The npm e2b SDK gates features on this string (sdk 2.51: < 0.4.0 forces
 * user "user", < 0.5.2 refuses closeStdin, >= 0.5.7 enables octet-stream
 * uploads, >= 0.6.2 file metadata), so it names the envd feature level we
 * implement, not an independent warren counter. Templates record it and
 * POST /sandboxes returns it as envdVersion. */
#ifndef WARREN_AGENT_VERSION_H
#define WARREN_AGENT_VERSION_H

#define AGENT_VERSION "0.5.7"

#endif
