/* vm_snapshot: saving a paused VM and building one from a snapshot (the
 * public entry points vm__snapshot and vm__prepare_restore are in vm.h).
 * What follows is vm.c's side of a restore: vm__start calls these in
 * place of the kernel load and the boot registers when vm->restore is set.
 * Each returns 0 or -errno with a reason in error. */
#ifndef WARREN_VMM_VM_SNAPSHOT_H
#define WARREN_VMM_VM_SNAPSHOT_H

#include <stddef.h>

#include "vm.h"

/* Guest RAM: the memory file mapped private (vm->memory set). */
int vm_snapshot__map_memory(struct vm *vm, char *error, size_t error_size);
/* Every created device's saved state put back (devices created from the
 * same configuration, in the same order). */
int vm_snapshot__restore_devices(struct vm *vm, char *error, size_t error_size);
/* irqchips, PIT, every vCPU's state, the clock, the serial port; after the
 * vCPUs are created and before they run. */
int vm_snapshot__restore_state(struct vm *vm, char *error, size_t error_size);
/* Frees vm->restore and its memory path. */
void vm_snapshot__release(struct vm *vm);

#endif
