// Command gonotls is a Go program without crypto/tls, for tlstrack's tests.
package main

import "fmt"

func main() { fmt.Println("ready") }
