// Command image builds the apeiro-cmk container image without a container engine: the webhook and every plugin
// binary on a base layer made from pinned Debian packages, reproducibly (the same binaries, packages and
// SOURCE_DATE_EPOCH give the same digest), with an SPDX SBOM generated from the binaries' Go build info.
//
//	go run . compile -root ../.. -out DIR           build the binaries (static; cgo only where a dependency needs it)
//	go run . build -root ../.. -bin DIR -debs DIR -out DIR [-tag REF] [-version V] [-revision SHA]
//	go run . verify -tar FILE [-profile FILE]       load a docker archive and print what it holds as JSON
//
// docs/image.md describes the image and the decisions behind it.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "compile":
		err = runCompile(os.Args[2:])
	case "build":
		err = runBuild(os.Args[2:])
	case "verify":
		err = runVerify(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: image compile|build|verify [flags] (see -h of each)")
	os.Exit(2)
}
