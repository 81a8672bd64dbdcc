package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process whose stdout and stderr go to a log file.
type Process struct {
	Name    string
	LogPath string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// StartProcess runs bin with args, appending its output to logPath. env entries are added to the parent's
// environment. The child gets its own process group (so a Ctrl-C in a terminal reaches only the parent, which then
// stops the children in order) and, on Linux, is killed when the parent dies.
func StartProcess(name, bin string, args []string, logPath string, env ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", name, err)
	}
	fmt.Fprintf(f, "### %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID of the process.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and with which error (nil for exit status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// ExitError describes an unexpected exit, with the tail of the log.
func (p *Process) ExitError() error {
	exited, err := p.Exited()
	if !exited {
		return nil
	}
	status := "exited with status 0"
	if err != nil {
		status = err.Error()
	}
	return fmt.Errorf("%s %s; last lines of %s:\n%s", p.Name, status, p.LogPath, p.LogTail(25))
}

// LogTail returns the last n lines of the process log.
func (p *Process) LogTail(n int) string {
	return TailFile(p.LogPath, n)
}

// Stop sends SIGTERM to the process group and SIGKILL after grace. It returns nil when the process ended, whatever
// its exit status after the signal; calling it again returns the first result.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		p.stopErr = p.stop(grace)
	})
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGTERM to %s: %w", p.Name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGKILL to %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.cmd.Process.Pid)
	}
}

// TailFile returns the last n lines of a file, or a note when it cannot be read.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
