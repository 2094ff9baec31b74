// Command clientgo is a Kubernetes client that no one at Tower wrote: it runs
// k8s.io/client-go against a kubeconfig, so the e2e tests and the bench see
// what a real controller sees through the tunnel (HTTP/2 by ALPN, list +
// watch). Built by test/e2e/tools/clientgo.sh.
//
// Usage:
//
//	clientgo SUBCOMMAND [flags]
//
// Each subcommand lives in its own file and registers itself in commands from
// an init function, so adding one never touches this file. A subcommand
// prints one JSON object on stdout and exits 0, or prints its error on stderr
// and exits 1. Usage errors exit 2.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// command is one subcommand: it parses its own flags from args and returns
// the value to print as JSON.
type command struct {
	summary string
	run     func(args []string) (any, error)
}

// commands maps a subcommand's name to it; filled by init functions.
var commands = map[string]command{}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clientgo SUBCOMMAND [flags]")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, commands[name].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "clientgo: unknown subcommand %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	out, err := cmd.run(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "clientgo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "clientgo %s: writing result: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
