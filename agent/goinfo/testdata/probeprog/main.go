// Command probeprog is built by the goinfo tests; it links every function
// and type goinfo resolves (net, crypto/tls, channels, goroutines, select).
// Run without arguments it exits immediately.
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	ch := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch <- 1
	}()
	select {
	case v := <-ch:
		fmt.Println("recv", v)
	case <-time.After(time.Second):
	}
	<-done
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Println(err)
		return
	}
	tc := tls.Client(c, &tls.Config{ServerName: "localhost"})
	if _, err := tc.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		fmt.Println(err)
	}
	buf := make([]byte, 512)
	n, err := tc.Read(buf)
	fmt.Println(n, err)
	_ = tc.Close()
}
