//go:build !linux

package controlplane

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
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
