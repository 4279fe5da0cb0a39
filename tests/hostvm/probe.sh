# shellcheck shell=bash
# Sourced by the hostvm wrappers. hostvm_probe: returns 0 when this machine
# has hardware KVM (/dev/kvm opens read-write and the CPU flags show vmx or
# svm), 1 otherwise with the reason in $hostvm_reason (no /dev/kvm, or a
# kvm_pvm host, whose guests cannot run Linux user space).
# shellcheck disable=SC2034 # hostvm_reason is read by the scripts that source this file
hostvm_probe() {
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		hostvm_reason="hardware KVM"
		return 0
	fi
	hostvm_reason="no /dev/kvm"
	[ -e /dev/kvm ] && hostvm_reason="/dev/kvm without vmx/svm (kvm_pvm: no guest user space)"
	return 1
}
