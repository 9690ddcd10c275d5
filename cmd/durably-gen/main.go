// Command durably-gen generates typed Go code from a durably.yaml
// declaration: jobs, labels, the auth context, an HTTP handler and a client.
//
// Usage:
//
//	durably-gen [flags] [durably.yaml]
//
// Install it as a tool of your module and run it from go generate:
//
//	go get -tool github.com/durably-go/durably/cmd/durably-gen@latest
//	//go:generate go tool durably-gen
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/durably-go/durably/gen"
)

const usage = `durably-gen generates a Go package from a durably.yaml declaration of jobs,
labels and an auth context: typed job handles and triggers, a Labels type
whose required labels are parameters of NewLabels, the auth context type,
JSON Schemas (JobSchemas, for the HTTP handler), and a typed HTTP client.

Usage:

	durably-gen [flags] [durably.yaml]

The declaration defaults to durably.yaml in the current directory. The
generator writes only files it owns (their first line says so) and removes
the ones it generated before that the declaration no longer asks for.

Example, in a package of your module:

	//go:generate go tool durably-gen

after installing the generator as a tool of the module:

	go get -tool github.com/durably-go/durably/cmd/durably-gen@latest

Flags:
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("durably-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	config := fs.String("config", "", "the declaration (same as the argument; kept for older go:generate lines)")
	schema := fs.Bool("schema", false, "print the JSON Schema of the declaration format and exit")
	check := fs.Bool("check", false, "write nothing; exit 1 naming the generated files that are not up to date")
	quiet := fs.Bool("q", false, "do not list the files written")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case *version:
		fmt.Fprintln(stdout, "durably-gen", gen.Version+moduleVersion())
		return 0
	case *schema:
		stdout.Write(gen.Schema())
		return 0
	}
	decl := "durably.yaml"
	switch {
	case fs.NArg() > 1:
		fmt.Fprintln(stderr, "durably-gen: one declaration at a time; got", fs.NArg())
		fs.Usage()
		return 2
	case fs.NArg() == 1 && *config != "" && fs.Arg(0) != *config:
		fmt.Fprintln(stderr, "durably-gen: -config and the argument name different declarations")
		return 2
	case fs.NArg() == 1:
		decl = fs.Arg(0)
	case *config != "":
		decl = *config
	}
	if *check {
		stale, err := gen.Stale(decl)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, f := range stale {
			fmt.Fprintf(stderr, "durably-gen: %s is not up to date with %s; run go generate\n", f, decl)
		}
		if len(stale) > 0 {
			return 1
		}
		return 0
	}
	written, removed, err := gen.Write(decl)
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "durably-gen: nothing written")
		return 1
	}
	if !*quiet {
		for _, f := range written {
			fmt.Fprintln(stdout, "durably-gen: wrote", f)
		}
		for _, f := range removed {
			fmt.Fprintln(stdout, "durably-gen: removed", f, "(no longer generated)")
		}
	}
	return 0
}

// moduleVersion is the version of the durably module the command was built
// from, when the build knows it (go get -tool, go install …@v1.2.3).
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
	for _, m := range mods {
		if m.Path == "github.com/durably-go/durably" && m.Version != "" && m.Version != "(devel)" {
			return " (github.com/durably-go/durably " + m.Version + ")"
		}
	}
	return ""
}
