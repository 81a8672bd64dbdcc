package plugintest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Process tracking reads /proc, so it is Linux-only; elsewhere the
// "child process gone" part of CheckShutdown is skipped.
func processTrackingSupported() bool { return runtime.GOOS == "linux" }

// findChildren returns the PIDs of live direct children of this process whose
// environment contains envEntry.
func findChildren(envEntry string) []int {
	if !processTrackingSupported() {
		return nil
	}
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procStat(pid)
		if !ok || ppid != self || state == "Z" {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == envEntry {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if !processTrackingSupported() {
		return false
	}
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// procStat parses ppid and state from /proc/<pid>/stat. The command name is
// in parentheses and may contain spaces, so parse after the last ')'.
func procStat(pid int) (ppid int, state string, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", false
	}
	return ppid, fields[0], true
}
