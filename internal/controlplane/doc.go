// Package controlplane starts and stops a real Kubernetes control plane — etcd and kube-apiserver — as child
// processes on free loopback ports, for the dev stack (make run) and the e2e suite.
//
// The binaries come from a directory (hack/peers/build-kube.sh prints it). Everything the processes need is
// generated in Go into a work directory: a throw-away CA and a serving certificate for 127.0.0.1, service-account
// signing keys, a token file with one admin in system:masters, and an admin kubeconfig. Each process writes its
// output to <name>.log in the work directory, so a failed start can show what the process said.
//
// Nothing here is suitable for production: etcd runs without fsync and the admin token is a static token.
package controlplane
