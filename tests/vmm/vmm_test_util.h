/* Helpers for the warren-vmm integration tests: run the binary, capture
 * its console and stderr, find the test guests. */
#ifndef WARREN_TEST_VMM_UTIL_H
#define WARREN_TEST_VMM_UTIL_H

#include <stdbool.h>
#include <stddef.h>

struct vmm_run {
	int status; /* exit status, or -1 when killed by a signal */
	char console[65536];
	char stderr_text[16384];
	double seconds;
};

/* True when /dev/kvm can be opened; otherwise prints why to stdout. */
bool vmm_test__have_kvm(void);
/* Path of build/bin/warren-vmm or of a test guest (build/guests/NAME.elf). */
const char *vmm_test__binary(void);
const char *vmm_test__guest(const char *name);
/* Runs warren-vmm with argv (NULL-terminated, without argv[0]) plus
 * --console <tmp>; fills run. Returns 0 or -1 when it could not run. */
int vmm_test__run(const char *const *args, struct vmm_run *run);

#endif
