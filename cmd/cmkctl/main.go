// Command cmkctl encrypts and decrypts payloads through apeiro-cmk's key chain: with a ServiceEncryptionKey (whose
// material is unwrapped by its Account's L1 key) or directly with an Account's L1 key. See `cmkctl help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/apeirora/apeiro-cmk/cmd/cmkctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
