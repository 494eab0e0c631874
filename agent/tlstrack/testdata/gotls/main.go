// Command gotls uses crypto/tls, for tlstrack's tests: it prints "ready"
// and sleeps; with an address it dials it over TLS first.
package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		c, err := tls.Dial("tcp", os.Args[1], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		buf := make([]byte, 512)
		_, _ = c.Read(buf)
		c.Close()
	}
	fmt.Println("ready")
	time.Sleep(60 * time.Second)
}
