/* Runtime of the freestanding test guests (tests/guests/README.md).
 * Ports: COM1 0x3f8 output, 0x501 debug exit (code), 0x3f0 boot marker,
 * 0x508 / MMIO 0xfeb00000 test register (reads return ~last write). */
#ifndef WARREN_TEST_GUEST_H
#define WARREN_TEST_GUEST_H

#include <stdint.h>

#define GUEST_PASS		   0
#define GUEST_FAIL		   1
#define GUEST_SYSCALL_NOT_REACHED  2
#define GUEST_UNEXPECTED_EXCEPTION 3

#define PORT_COM1	0x3f8
#define PORT_DEBUG_EXIT 0x501
#define PORT_TEST	0x508
#define TEST_MMIO_BASE	0xfeb00000ul

/* GDT selectors set up by guest_setup() */
#define KERNEL_CS    0x08
#define KERNEL_DS    0x10
#define USER_DS	     0x18
#define USER_CS	     0x20
#define TSS_SELECTOR 0x28

struct interrupt_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

static inline void outb(uint16_t port, uint8_t value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t value)
{
	__asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t value)
{
	__asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t value;
	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t value;
	__asm__ volatile("inw %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t value;
	__asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}
static inline void wrmsr(uint32_t msr, uint64_t value)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t low, high;
	__asm__ volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(msr));
	return ((uint64_t)high << 32) | low;
}

void guest_puts(const char *text);
void guest_put_hex(uint64_t value);
__attribute__((noreturn)) void guest_exit(int code);
/* Installs a handler for vector 32-47 (or an exception 0-31). */
void guest_set_handler(unsigned vector, void (*handler)(struct interrupt_frame *frame));
/* Jumps to fn at CPL3 on its own stack, IOPL 3 (so it may use ports),
 * interrupts off. Does not return. */
__attribute__((noreturn)) void guest_enter_user(void (*fn)(void));
/* Programs STAR/LSTAR/SFMASK and EFER.SCE so SYSCALL enters
 * guest_syscall(rax). */
void guest_enable_syscall(void);

/* Implemented by each guest. */
void guest_main(void);
/* Called by SYSCALL (only guests that enable it define it). */
void guest_syscall(uint64_t rax);

#endif
