// Command tokengate is the OAuth 2.0 authorization server for payment APIs.
// Everything it does lives in package cli; see the README.
package main

import (
	"os"

	"github.com/tokengate/tokengate/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Environ()))
}
