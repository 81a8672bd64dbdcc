package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ldflags strip the symbol table and DWARF (-s -w) and clear the Go build ID, which otherwise differs between
// machines for the same source; with -trimpath no path of the build machine ends up in the binary.
const ldflags = "-s -w -buildid="

// runCompile builds ./cmd/webhook into <out>/webhook and every ./cmd/plugins/<name> into <out>/plugins/<name>.
// A command is built with cgo only when one of its non-standard dependencies has cgo files: the Thales keystore
// (PKCS#11 modules are C libraries loaded with dlopen), which the Thales plugin and -- through its builtin
// plugins -- the webhook link. Those are dynamically linked against the base layer's C library; everything else
// is static (CGO_ENABLED=0).
func runCompile(args []string) error {
	fs := flag.NewFlagSet("compile", flag.ExitOnError)
	root := fs.String("root", "../..", "repository root (the apeiro-cmk module)")
	out := fs.String("out", "", "output directory (required)")
	goBin := fs.String("go", "go", "go command")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	outAbs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	plugins, err := pluginDirs(rootAbs)
	if err != nil {
		return err
	}
	cgo, err := cgoPackages(*goBin, rootAbs, plugins)
	if err != nil {
		return err
	}
	var static, dynamic []string
	for _, p := range plugins {
		if cgo[p] {
			dynamic = append(dynamic, "./cmd/plugins/"+p)
		} else {
			static = append(static, "./cmd/plugins/"+p)
		}
	}
	if err := os.MkdirAll(filepath.Join(outAbs, "plugins"), 0o755); err != nil {
		return err
	}
	builds := []struct {
		cgo  bool
		out  string
		pkgs []string
	}{
		{cgo["webhook"], filepath.Join(outAbs, "webhook"), []string{"./cmd/webhook"}},
		{false, filepath.Join(outAbs, "plugins") + "/", static},
		{true, filepath.Join(outAbs, "plugins") + "/", dynamic},
	}
	for _, b := range builds {
		if len(b.pkgs) == 0 {
			continue
		}
		cgoEnv := "CGO_ENABLED=0"
		if b.cgo {
			cgoEnv = "CGO_ENABLED=1"
		}
		fmt.Fprintf(os.Stderr, ">> %s go build %s\n", cgoEnv, strings.Join(b.pkgs, " "))
		cmd := exec.Command(*goBin, append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", b.out}, b.pkgs...)...)
		cmd.Dir = rootAbs
		cmd.Env = append(os.Environ(), cgoEnv, "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", strings.Join(b.pkgs, " "), err)
		}
	}
	// A static build that still came out dynamically linked (a cgo dependency missed above) would fail at start
	// in the image only if its loader were missing; catch it here instead.
	for _, p := range append([]string{"webhook"}, plugins...) {
		path := filepath.Join(outAbs, "plugins", p)
		if p == "webhook" {
			path = filepath.Join(outAbs, "webhook")
		}
		interp, _, err := elfDeps(path)
		if err != nil {
			return err
		}
		if (interp != "") != cgo[p] {
			return fmt.Errorf("%s: dynamically linked = %t, want %t", path, interp != "", cgo[p])
		}
	}
	return nil
}

// pluginDirs lists the plugin commands under cmd/plugins, sorted.
func pluginDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "cmd", "plugins"))
	if err != nil {
		return nil, fmt.Errorf("listing plugin commands: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no plugin commands under %s/cmd/plugins", root)
	}
	sort.Strings(names)
	return names, nil
}

// cgoPackages reports, per command (webhook or plugin name), whether a non-standard dependency has cgo files.
// Standard packages (net, os/user) are left out: they have pure-Go fallbacks.
func cgoPackages(goBin, root string, plugins []string) (map[string]bool, error) {
	pkgs := []string{"./cmd/webhook"}
	for _, p := range plugins {
		pkgs = append(pkgs, "./cmd/plugins/"+p)
	}
	list := func(format string, deps bool) ([]string, error) {
		args := []string{"list", "-f", format}
		if deps {
			args = append(args, "-deps")
		}
		cmd := exec.Command(goBin, append(args, pkgs...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n"), nil
	}
	withCgo, err := list(`{{if and (not .Standard) .CgoFiles}}{{.ImportPath}}{{end}}`, true)
	if err != nil {
		return nil, err
	}
	cgoSet := map[string]bool{}
	for _, p := range withCgo {
		if p != "" {
			cgoSet[p] = true
		}
	}
	lines, err := list(`{{.ImportPath}} {{join .Deps " "}}`, false)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		name := filepath.Base(f[0])
		for _, d := range f[1:] {
			if cgoSet[d] {
				out[name] = true
			}
		}
	}
	return out, nil
}

// elfDeps returns an ELF binary's program interpreter ("" for a static binary) and the shared libraries it needs.
func elfDeps(path string) (string, []string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("%s is not an ELF binary: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", nil, fmt.Errorf("%s: machine %s, the image is linux/amd64", path, f.Machine)
	}
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, fmt.Errorf("%s: reading PT_INTERP: %w", path, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return "", nil, nil
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("%s: reading DT_NEEDED: %w", path, err)
	}
	sort.Strings(libs)
	return interp, libs, nil
}
