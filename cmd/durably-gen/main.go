// Command durably-gen generates typed Go code from a durably.yaml
// declaration: jobs, labels, the auth context, an HTTP handler and a client.
//
//	//go:generate go run github.com/durably-go/durably/cmd/durably-gen -config durably.yaml
//
// Run it with -schema to print the declaration's JSON Schema instead.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/durably-go/durably/gen"
)

func main() {
	config := flag.String("config", "durably.yaml", "the declaration to generate from")
	schema := flag.Bool("schema", false, "print the JSON Schema of the declaration format and exit")
	quiet := flag.Bool("q", false, "do not list the files written")
	flag.Parse()
	if *schema {
		os.Stdout.Write(gen.Schema())
		return
	}
	files, err := gen.Write(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		fmt.Fprintln(os.Stderr, "durably-gen: nothing written")
		os.Exit(1)
	}
	if !*quiet {
		for _, f := range files {
			fmt.Println("durably-gen: wrote", f)
		}
	}
}
