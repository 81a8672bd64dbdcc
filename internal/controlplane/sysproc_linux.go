//go:build linux

package controlplane

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig: when the test binary or the dev stack dies without cleaning up (a panic, go test's timeout
	// kill), the kernel kills the children instead of leaving an apiserver holding ports.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil {
		if err == syscall.ESRCH {
			return nil
		}
		return err
	}
	return nil
}
