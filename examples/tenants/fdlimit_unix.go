//go:build unix

package main

import "syscall"

// fdLimit is the process's limit of open files.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<24 {
		return 1 << 16
	}
	return int(r.Cur)
}
